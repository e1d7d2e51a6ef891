"""Checkers: pure functions ``check(history, config) -> CheckResult`` judging one recorded history.

One module per property (lost, stuck, duplicated, unexpected, revoked_ran, transitions, fallback_parity,
availability); ``compose`` runs them together; ``analysis`` holds the per-task views they share.
"""

from chaos.checkers.compose import REGISTRY, Verdict, check_all, compose
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, merge_valid

__all__ = [
    "REGISTRY",
    "UNKNOWN",
    "CheckConfig",
    "CheckResult",
    "Finding",
    "Validity",
    "Verdict",
    "check_all",
    "compose",
    "merge_valid",
]
