"""Duplicated work: a task body that ran to success twice, left more effects than it should, or ran on two
workers at once. Executions come from the target's ledger, else from the worker probe (Celery's signals in the
target's workers; no effects there); abstains without either.

An execution whose worker process was killed never records ``finished_at``; it is taken to have ended at the
kill (a process-ending fault on its worker's node open at or after its start), otherwise it stays open and any later
execution overlaps it. ``fenced`` executions (stopped from committing by the target) never count.

With ``duplicates_allowed`` (at-least-once targets) every anomaly is kept as an informational finding of kind
``duplicated-allowed`` (``evidence.anomaly`` says which) and the verdict stays true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaos.checkers.analysis import effective_end, process_ending_faults
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, cap_per_kind
from chaos.history import Execution, FaultWindow, History, LedgerTask, OpPair

NAME = "duplicated"
ALLOWED = "duplicated-allowed"
NO_EXECUTIONS = ("no execution records: the target declares no ledger and the worker probe recorded nothing, so runs "
                 "of a task body are not visible")


@dataclass
class _Keyed:
    findings: list[Finding]
    stats: dict[str, int]


def key_not_honoured(history: History, config: CheckConfig) -> _Keyed:
    """Submits sharing an idempotency key that were acknowledged with different task ids: one key, two tasks.

    Decidable from the client's side alone, so it needs no ledger.
    """
    by_key: dict[str, list[OpPair]] = {}
    for p in history.pairs("submit"):
        key = (p.invoke.value or {}).get("idempotency_key")
        if key and p.phase == "ok" and p.task_id:
            by_key.setdefault(str(key), []).append(p)
    findings = []
    for key, pairs in by_key.items():
        ids = sorted({p.task_id for p in pairs if p.task_id})
        if len(ids) > 1:
            kind = ALLOWED if config.duplicates_allowed else "key-not-honoured"
            findings.append(Finding(
                NAME, kind, ids,
                f"{len(pairs)} submits with the same idempotency key {key!r} were acknowledged as {len(ids)} "
                f"different tasks ({', '.join(ids[:4])}): the key did not make the resubmit return the first task",
                {"anomaly": "key-not-honoured", "key": key, "submits": [p.to_dict() for p in pairs[:10]]}))
    return _Keyed(findings, {"keyed": sum(1 for ps in by_key.values() if len(ps) > 1)})


def overlapping_pairs(task: LedgerTask, kills: list[FaultWindow]) -> list[tuple[Execution, Execution]]:
    """Pairs of non-fenced executions where neither ended before the other started."""
    runs = sorted((e for e in task.executions if e.outcome != "fenced"), key=lambda e: e.started_at)
    pairs = []
    for i, a in enumerate(runs):
        end_a = effective_end(a, kills)
        for b in runs[i + 1 :]:
            if end_a is None or end_a > b.started_at:
                pairs.append((a, b))
    return pairs


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    ledger = history.executions()  # the target's ledger, else the worker probe's records (no effects then)
    keyed = key_not_honoured(history, config)
    if ledger is None:
        stats: dict[str, Any] = {"ledger": False, "keyed_resubmits": keyed.stats["keyed"]}
        if keyed.findings:
            return CheckResult(NAME, config.duplicates_allowed, keyed.findings, stats)
        stats["undecided"] = NO_EXECUTIONS
        if not keyed.stats["keyed"]:
            stats["applicable"] = False  # nothing it can see: abstain (the report says why)
            return CheckResult(NAME, UNKNOWN, [], stats)
        stats["partial"] = NO_EXECUTIONS
        return CheckResult(NAME, True, [], stats)
    kills = process_ending_faults(history)
    findings: list[Finding] = list(keyed.findings)
    stats = {
        "ledger": history.executions_source == "ledger",
        "source": history.executions_source,
        "keyed_resubmits": keyed.stats["keyed"],
        "tasks": len(ledger.tasks),
        "executions": 0,
        "retried": 0,
        "duplicated": 0,
        "duplicate_successes": 0,
        "excess_effects": 0,
        "concurrent_executions": 0,
    }

    def report(anomaly: str, task: LedgerTask, message: str, evidence: dict[str, Any]) -> None:
        kind = ALLOWED if config.duplicates_allowed else anomaly
        findings.append(Finding(NAME, kind, [task.task_id], message, {"anomaly": anomaly, **evidence}))

    for task in ledger.tasks:
        stats["executions"] += len(task.executions)
        if len(task.executions) > 1:
            stats["retried"] += 1
        before = len(findings)
        successes = [e for e in task.executions if e.outcome == "success"]
        if len(successes) > 1:
            stats["duplicate_successes"] += 1
            report(
                "duplicate-success",
                task,
                f"task {task.task_id} ran to success {len(successes)} times",
                {"executions": [e.to_dict() for e in successes], "state": task.state},
            )
        if task.effects > task.expected_effects:
            stats["excess_effects"] += 1
            report(
                "excess-effects",
                task,
                f"task {task.task_id} left {task.effects} effects, {task.expected_effects} expected",
                {
                    "effects": task.effects,
                    "expected_effects": task.expected_effects,
                    "executions": [e.to_dict() for e in task.executions],
                },
            )
        overlaps = overlapping_pairs(task, kills)
        if overlaps:
            stats["concurrent_executions"] += 1
            a, b = overlaps[0]
            report(
                "concurrent-execution",
                task,
                f"task {task.task_id} ran on {a.worker} (attempt {a.attempt}) and {b.worker} "
                f"(attempt {b.attempt}) at the same time",
                {
                    "pairs": [[x.to_dict(), y.to_dict()] for x, y in overlaps[:10]],
                    "overlapping_pairs": len(overlaps),
                },
            )
        if len(findings) > before:
            stats["duplicated"] += 1

    if config.duplicates_allowed:
        stats["duplicated_allowed"] = stats["duplicated"]
    valid = config.duplicates_allowed or not findings
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)
