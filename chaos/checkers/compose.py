"""Running several checkers as one: a registry by name, and Jepsen's merge of verdicts.

A checker that raises does not take the others down: its result is ``unknown`` with a ``checker-crashed``
finding carrying the exception, so a bug in a checker can never pass the gate silently.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.checkers import (
    availability,
    duplicated,
    fallback_parity,
    health,
    lost,
    revoked_ran,
    stuck,
    transitions,
    unexpected,
    worker_crash,
)
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, merge_valid
from chaos.history import History

Checker = Callable[[History, CheckConfig], CheckResult]

REGISTRY: dict[str, Checker] = {
    lost.NAME: lost.check,
    stuck.NAME: stuck.check,
    duplicated.NAME: duplicated.check,
    unexpected.NAME: unexpected.check,
    revoked_ran.NAME: revoked_ran.check,
    transitions.NAME: transitions.check,
    fallback_parity.NAME: fallback_parity.check,
    availability.NAME: availability.check,
    health.NAME: health.check,
    worker_crash.NAME: worker_crash.check,
}

EXIT_CODES = {True: 0, False: 1, UNKNOWN: 2}


def applicable(result: CheckResult) -> bool:
    """False for an undecided result whose checker found nothing to judge (no fallback task, few samples)."""
    return not (result.valid == UNKNOWN and result.stats.get("applicable") is False)


def compose(results: Iterable[CheckResult], name: str = "compose") -> CheckResult:
    """Merge results: false dominates unknown dominates true; findings concatenated; stats keyed by checker."""
    results = list(results)
    return CheckResult(
        checker=name,
        valid=merge_valid(r.valid for r in results),
        findings=[f for r in results for f in r.findings],
        stats={r.checker: r.stats for r in results},
    )


def run_checker(name: str, checker: Checker, history: History, config: CheckConfig) -> CheckResult:
    """Run one checker, turning an exception into an unknown result that says what broke."""
    try:
        return checker(history, config)
    except Exception as exc:  # noqa: BLE001 - a crashing checker must become evidence, not a crash
        return CheckResult(
            name,
            UNKNOWN,
            [
                Finding(
                    name,
                    "checker-crashed",
                    [],
                    f"checker {name} raised {type(exc).__name__}: {exc}",
                    {"traceback": traceback.format_exc()},
                )
            ],
            {"crashed": True},
        )


@dataclass
class Verdict:
    """All checker results of one history and their merged validity."""

    results: dict[str, CheckResult]

    @property
    def valid(self) -> Validity:
        """Merged validity; a checker that had nothing to judge (``stats["applicable"] is False``) abstains."""
        return merge_valid(r.valid for r in self.results.values() if applicable(r))

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results.values() for f in r.findings]

    @property
    def exit_code(self) -> int:
        """Jepsen's convention (see chaos.errors): 0 valid, 1 a violation, 2 undecided."""
        return EXIT_CODES[self.valid]

    def composed(self) -> CheckResult:
        return compose(self.results.values())

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "results": {n: r.to_dict() for n, r in self.results.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        return cls({n: CheckResult.from_dict(r) for n, r in (data.get("results") or {}).items()})


def check_all(
    history: History, config: CheckConfig | None = None, checkers: Sequence[str] | None = None
) -> Verdict:
    """Run the named checkers (all registered ones by default) on a history."""
    config = config or CheckConfig()
    names = list(checkers) if checkers is not None else list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown checker(s) {unknown}; known: {sorted(REGISTRY)}")
    return Verdict({n: abstain(n, config.not_applicable[n]) if n in config.not_applicable
                    else run_checker(n, REGISTRY[n], history, config) for n in names})


def abstain(name: str, reason: str) -> CheckResult:
    """The result of a checker that cannot judge this target: n/a, with the reason the report shows."""
    return CheckResult(name, UNKNOWN, [], {"applicable": False, "undecided": reason})


def reason(result: CheckResult) -> str | None:
    """Why a checker abstained or stayed undecided (None when it decided)."""
    if result.valid != UNKNOWN:
        return None
    value = result.stats.get("undecided")
    return None if value is None else str(value)
