"""Fallback parity: tasks the service accepted in degraded mode (``mode: "fallback"``, e.g. stored locally
while the broker was down) must end like any other: in their expected terminal state, or REVOKED.

A view on lost/stuck restricted to fallback tasks, plus per-mode counts so the report can compare modes.
Unknown when the history has no fallback task (nothing was tested) or a fallback task has no final state.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import TaskLifecycle, acknowledged, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, cap_per_kind
from chaos.history import NOT_FOUND, History

NAME = "fallback_parity"
FALLBACK = "fallback"


def outcome(t: TaskLifecycle, config: CheckConfig, ledger_present: bool) -> str:
    """expected / revoked / lost / stuck / wrong-outcome / unknown."""
    if t.not_found_reads(after=t.acknowledged_time) or (ledger_present and t.ledger is None):
        return "lost"
    final = t.final_state
    if final is None:
        return "unknown"
    if final == NOT_FOUND:
        return "lost"
    if not config.is_terminal(final):
        return "stuck"
    if final == "REVOKED":
        return "revoked"
    if t.expect is None or final == t.expect:
        return "expected"
    return "wrong-outcome"


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    ledger = history.ledger()
    acked = acknowledged(task_lifecycles(history, ledger))
    per_mode: dict[str, dict[str, int]] = {}
    findings: list[Finding] = []
    undecided = 0
    for t in acked:
        mode = t.mode or "unknown"
        result = outcome(t, config, ledger is not None)
        counts = per_mode.setdefault(mode, {"accepted": 0})
        counts["accepted"] += 1
        counts[result] = counts.get(result, 0) + 1
        if mode != FALLBACK:
            continue
        if result == "unknown":
            undecided += 1
        elif result not in ("expected", "revoked"):
            findings.append(
                Finding(
                    NAME,
                    f"fallback-{result}",
                    [t.task_id],
                    f"task {t.task_id}, accepted in fallback mode, ended {result}"
                    f" (final state {t.final_state}, expected {t.expect})",
                    {
                        "final_state": t.final_state,
                        "final_source": t.final_source,
                        "expect": t.expect,
                        "submit": t.first_ack.to_dict() if t.first_ack else None,
                        "ledger": t.ledger.to_dict() if t.ledger else None,
                    },
                )
            )
    fallback = per_mode.get(FALLBACK, {}).get("accepted", 0)
    stats: dict[str, Any] = {
        "per_mode": per_mode,
        "fallback_accepted": fallback,
        "fallback_failed": len(findings),
    }
    valid: Validity
    if findings:
        valid = False
    elif fallback == 0:
        valid = UNKNOWN
        stats["undecided"] = "no task was accepted in fallback mode"
        stats["applicable"] = False  # nothing to judge: does not make the verdict undecided
    elif undecided:
        valid = UNKNOWN
        stats["undecided"] = f"{undecided} fallback task(s) have no final read nor ledger row"
    else:
        valid = True
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)
