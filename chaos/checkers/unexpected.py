"""Unexpected work: tasks the target created during the run that no client request explains.

A ledger task is explained when a submit acknowledged its id, when a client used its id (e.g. as an
idempotency key), or when it can be charged to a submit whose outcome is unknown (info): each such submit
explains at most one task created after it was sent (see ``analysis.attribute_unacknowledged``). A task whose
id is the idempotency key of submits that all *failed* (definitely did not happen) is a violation too.
Tasks created before the run started are ignored. Without a ledger the worker probe's executions stand in
(``from_probe``); with neither, only the status reads of never-submitted ids can be judged.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import attribute_unacknowledged, op_evidence, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, cap_per_kind
from chaos.history import EXECUTIONS_PROBE, History

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
    if ledger is None and history.executions_source == "probe":
        return from_probe(history, config, phantoms)
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


def from_probe(history: History, config: CheckConfig, phantoms: list[Finding]) -> CheckResult:
    """Without a ledger: executions the worker probe saw of ids no submit returned and no unknown-fate submit
    explains, for the task names the client's own submits ran as (an app's sub-tasks and periodic tasks are its
    own business, not work the client did not ask for)."""
    executions = history.executions()
    assert executions is not None
    probe = history.probe(EXECUTIONS_PROBE)
    names = {str(t.get("task_id")): t.get("name") for t in ((probe.value if probe else None) or {}).get("tasks") or []}
    tasks = task_lifecycles(history, executions)
    submitted = {names.get(t.task_id) for t in tasks.values() if t.acknowledged} - {None}
    attribution = attribute_unacknowledged(history, tasks, config)
    findings = list(phantoms)
    foreign = 0
    for tid in attribution.unexplained:
        name = names.get(tid)
        if name not in submitted:
            foreign += 1
            continue
        row = tasks[tid].ledger
        assert row is not None
        nodes = sorted({e.worker for e in row.executions if e.worker})
        findings.append(Finding(
            NAME, "unexpected-execution", [tid],
            f"a worker ({', '.join(nodes) or '?'}) ran {name} as task {tid}, an id no submit returned and no "
            "submit of unknown outcome explains: the same work was sent again under a new id (an API that calls "
            ".delay() again after an error or a timeout does that; reuse the task id with apply_async(task_id=...) "
            "or an idempotency key)",
            {"execution": row.to_dict(), "started_wall": history.started_wall}))
    stats = {"ledger": False, "executions": "probe", "executed_tasks": len(executions.tasks),
             "pre_existing": len(attribution.pre_existing),
             "explained_by_unknown_submits": len(attribution.from_unknown_submits),
             "other_task_names": foreign, "unexpected": len(findings) - len(phantoms),
             "phantom_statuses": len(phantoms)}
    return CheckResult(NAME, not findings, cap_per_kind(findings, config.max_evidence), stats)
