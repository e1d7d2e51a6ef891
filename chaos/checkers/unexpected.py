"""Unexpected work: tasks the target created during the run that no client request explains.

A ledger task is explained when a submit acknowledged its id, when a client used its id (e.g. as an
idempotency key), or when it can be charged to a submit whose outcome is unknown (info): each such submit
explains at most one task created after it was sent (see ``analysis.attribute_unacknowledged``). A task whose
id is the idempotency key of submits that all *failed* (definitely did not happen) is a violation too.
Tasks created before the run started are ignored. Needs the ledger (unknown without it).
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import attribute_unacknowledged, op_evidence, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, cap_per_kind
from chaos.history import History

NAME = "unexpected"


PROBE = "unknown-id"


def phantom_statuses(history: History) -> list[Finding]:
    """Status reads of ids nobody ever submitted (workload probes) that got anything but NOT_FOUND.

    A status API that answers PENDING for any id (Celery's default for an unknown id) makes a lost task look
    queued forever; the workload asks about random ids to catch it.
    """
    out = []
    for pair in history.pairs("status"):
        if (pair.invoke.value or {}).get("probe") != PROBE or pair.phase != "ok":
            continue
        status = pair.status
        if status != "NOT_FOUND":
            out.append(Finding(NAME, "phantom-status", [pair.task_id or "?"],
                               f"status of never-submitted id {pair.task_id} answered {status}, not NOT_FOUND",
                               {"reply": pair.completion.value if pair.completion else None}))
    return out


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    judged = config.unknown_ids == "not-found"
    phantoms = phantom_statuses(history) if judged else []
    ledger = history.ledger()
    if ledger is None:
        probes = sum(1 for p in history.pairs("status") if (p.invoke.value or {}).get("probe") == PROBE)
        stats: dict[str, Any] = {"ledger": False, "phantom_statuses": len(phantoms), "unknown_id_probes": probes}
        if phantoms:
            return CheckResult(NAME, False, phantoms, stats)
        if judged and probes:
            stats["partial"] = "no ledger: only status reads of never-submitted ids were judged"
            return CheckResult(NAME, True, [], stats)
        stats["undecided"] = ("no ledger, and the target answers PENDING for unknown ids (Celery's default), "
                              "so work nobody submitted is not visible")
        stats["applicable"] = False
        return CheckResult(NAME, UNKNOWN, [], stats)
    tasks = task_lifecycles(history, ledger)
    attribution = attribute_unacknowledged(history, tasks, config)
    findings: list[Finding] = list(phantoms)
    for tid in attribution.unexplained:
        row = tasks[tid].ledger
        assert row is not None
        findings.append(
            Finding(
                NAME,
                "unexpected-task",
                [tid],
                f"task {tid} was created during the run but no client submitted it",
                {"ledger": row.to_dict(), "started_wall": history.started_wall},
            )
        )
    for tid, submits in attribution.after_failed_submit.items():
        row = tasks[tid].ledger
        assert row is not None
        findings.append(
            Finding(
                NAME,
                "created-after-failed-submit",
                [tid],
                f"task {tid} exists although every submit asking for it failed (definitely did not happen)",
                {"ledger": row.to_dict(), "submits": op_evidence(submits)},
            )
        )
    stats = {
        "ledger": True,
        "ledger_tasks": len(ledger.tasks),
        "pre_existing": len(attribution.pre_existing),
        "explained_by_unknown_submits": len(attribution.from_unknown_submits),
        "unexpected": len(attribution.unexplained) + len(attribution.after_failed_submit),
        "phantom_statuses": len(phantoms),
    }
    return CheckResult(NAME, not findings, cap_per_kind(findings, config.max_evidence), stats)
