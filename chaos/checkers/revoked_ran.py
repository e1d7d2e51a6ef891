"""Revocations that did not hold: a cancel the service acknowledged (ok, REVOKED) is a promise.

Broken when an execution of the task *started* after the acknowledgement (``ran-after-revoke``, from the
ledger or the worker probe), when a cancel answered REVOKED and the task nevertheless ended in another terminal state
(``not-revoked``; a plain Celery revoke promises only that the task will not start), or when a task that
ended REVOKED left side effects (``effects-of-revoked``, needs the ledger). A cancel answered 409 (already
terminal) is a ``fail``, i.e. no promise, so it never makes a task accountable here. A non-terminal final
state after an acknowledged cancel is left to ``stuck``.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import op_evidence, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, cap_per_kind
from chaos.history import History

NAME = "revoked_ran"


def _is_conflict(p: Any) -> bool:
    value = p.value or {}
    return p.phase == "fail" and value.get("status_code") == 409


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    ledger = history.ledger()
    tasks = task_lifecycles(history, ledger)
    executions = history.executions()  # the ledger, else the worker probe: who started what, when
    runs = executions.by_id() if executions is not None else {}
    findings: list[Finding] = []
    cancels = history.pairs("cancel")
    stats: dict[str, Any] = {
        "ledger": ledger is not None,
        "cancels": len(cancels),
        "acknowledged": sum(1 for p in cancels if p.phase == "ok"),
        "conflicts": sum(1 for p in cancels if _is_conflict(p)),
        "unknown": sum(1 for p in cancels if p.phase == "info"),
        "revoked_tasks": 0,
        "ran_after_revoke": 0,
        "not_revoked": 0,
        "effects_of_revoked": 0,
    }
    undecided: list[str] = []

    for t in tasks.values():
        acks = t.acknowledged_cancels
        if acks:
            first = min(acks, key=lambda p: p.complete_time)
            assert first.completion is not None
            acked_wall = first.completion.wall
            row = runs.get(t.task_id)
            if row is not None:
                late = [e for e in row.executions if e.started_at > acked_wall + config.clock_skew_s]
                if late:
                    stats["ran_after_revoke"] += 1
                    findings.append(
                        Finding(
                            NAME,
                            "ran-after-revoke",
                            [t.task_id],
                            f"task {t.task_id} started {len(late)} execution(s) after its cancel was acknowledged",
                            {
                                "cancel": first.to_dict(),
                                "acknowledged_wall": acked_wall,
                                "executions": [e.to_dict() for e in late],
                            },
                        )
                    )
            final = t.final_state
            # Only a cancel the target answered with REVOKED promises the end state. Celery's own revoke (the
            # Celery client's cancel: a broadcast with no status) only promises the task will not *start*; a
            # task already running finishes (ran-after-revoke above judges what started later).
            confirmed = any(p.status == "REVOKED" for p in acks)
            if final is None:
                if confirmed:
                    undecided.append(t.task_id)
            elif confirmed and config.is_terminal(final) and final != "REVOKED":
                stats["not_revoked"] += 1
                findings.append(
                    Finding(
                        NAME,
                        "not-revoked",
                        [t.task_id],
                        f"task {t.task_id} had its cancel acknowledged but ended {final} ({t.final_source})",
                        {
                            "cancels": op_evidence(acks),
                            "final_state": final,
                            "final_source": t.final_source,
                            "drain": t.drain.to_dict() if t.drain else None,
                            "ledger": t.ledger.to_dict() if t.ledger else None,
                        },
                    )
                )
        row = t.ledger
        if row is not None and (row.state == "REVOKED" or t.final_state == "REVOKED"):
            stats["revoked_tasks"] += 1
            if row.effects > 0:
                stats["effects_of_revoked"] += 1
                findings.append(
                    Finding(
                        NAME,
                        "effects-of-revoked",
                        [t.task_id],
                        f"task {t.task_id} ended REVOKED but left {row.effects} effect(s)",
                        {"ledger": row.to_dict(), "cancels": op_evidence(t.cancels)},
                    )
                )

    stats["executions_source"] = history.executions_source
    if executions is None:
        stats["partial"] = ("no ledger nor worker probe records: executions after a cancel are not visible, only "
                            "the final state of cancelled tasks was judged")
    valid: Validity
    if findings:
        valid = False
    elif not any(t.acknowledged_cancels for t in tasks.values()) and not stats["revoked_tasks"]:
        valid = UNKNOWN
        stats["undecided"] = "no cancel was acknowledged in this run"
        stats["applicable"] = False
    elif undecided:
        valid = UNKNOWN
        stats["undecided"] = f"{len(set(undecided))} cancelled task(s) lack a ledger row or a final read"
    else:
        valid = True
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)
