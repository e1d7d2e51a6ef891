"""Lost tasks: the service said "accepted" and then the task was gone, or failed for no reason.

An acknowledged submit (ok with a task id) is a promise. It is broken when a read sent after the
acknowledgement says NOT_FOUND (kind ``vanished`` when the last read still says so, ``not-found-after-ack``
when it reappeared later: clients that saw 404 may have resubmitted), when the ledger has no such task
(``missing-from-ledger``), or when a task expected to succeed ends FAILURE without anyone cancelling it
(``failed-unexpectedly``), or when the broker inspector found it nowhere (no queue, not unacked, no live
worker holds it) in both of its looks a second apart (``gone``). NOT_FOUND after a seen state is judged here
only, not by ``transitions``.

Submits whose fate is unknown (info) need not exist, but if the ledger shows they created a task, that task
must finish too (``unknown-submit-incomplete``); the ones that did are counted as ``recovered``.

Without a ledger the client's reads decide: valid when every acknowledged task has a final drain read,
unknown for the tasks that have none.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import (
    TaskLifecycle,
    acknowledged,
    attribute_unacknowledged,
    op_evidence,
    task_lifecycles,
)
from chaos.checkers.config import CheckConfig
from chaos.checkers.explain import failure_hint, location_hint
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, cap_per_kind
from chaos.checkers.stuck import gone_twice
from chaos.history import NOT_FOUND, History, OpPair

NAME = "lost"


def _error_of(t: TaskLifecycle, history: History | None = None) -> Any:
    """The failure reason as the client or the ledger saw it, else the result backend's exception type."""
    for source in (t.drain, *reversed([p for p in t.reads if p.phase == "ok"])):
        if source is None or source.completion is None:
            continue
        c = source.completion
        if c.error:
            return c.error
        if c.value:
            for key in ("error", "result", "traceback", "exception"):
                if c.value.get(key):
                    return c.value[key]
    if history is not None:
        seen = (history.locations().get(t.task_id) or {}).get("second") or {}
        if seen.get("exception"):
            return f"{seen['exception']} (from the result backend: every status read failed)"
    return None


def _last_read(t: TaskLifecycle) -> OpPair | None:
    reads = [p for p in t.reads if p.phase == "ok" and p.status is not None]
    return max(reads, key=lambda p: p.complete_time) if reads else None


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    ledger = history.ledger()
    tasks = task_lifecycles(history, ledger)
    acked = acknowledged(tasks)
    findings: list[Finding] = []
    stats: dict[str, Any] = {
        "attempted": len(history.pairs("submit")),
        "acknowledged": len(acked),
        "ok": 0,
        "lost": 0,
        "failed_unexpectedly": 0,
        "unknown_fate": 0,
        "unknown_submits_in_ledger": 0,
        "recovered": 0,
        "ledger": ledger is not None,
    }
    unknown_fate: list[str] = []

    for t in acked:
        ack = t.first_ack
        assert ack is not None
        not_found = t.not_found_reads(after=t.acknowledged_time)
        if not_found:
            last = _last_read(t)
            gone = last is not None and last.status == NOT_FOUND
            kind = "vanished" if gone else "not-found-after-ack"
            stats["lost"] += 1
            findings.append(
                Finding(
                    NAME,
                    kind,
                    [t.task_id],
                    f"task {t.task_id} was acknowledged at t={ack.complete_time:.3f}s, then a read said NOT_FOUND"
                    + ("" if gone else " (it was seen again later)"),
                    {
                        "submit": ack.to_dict(),
                        "not_found_reads": op_evidence(not_found),
                        "ledger": t.ledger.to_dict() if t.ledger else None,
                    },
                )
            )
            continue
        if ledger is not None and t.ledger is None:
            stats["lost"] += 1
            findings.append(
                Finding(
                    NAME,
                    "missing-from-ledger",
                    [t.task_id],
                    f"task {t.task_id} was acknowledged but the target's ledger has no record of it",
                    {"submit": ack.to_dict(), "final_state": t.final_state},
                )
            )
            continue
        final = t.final_state
        if final is None:
            stats["unknown_fate"] += 1
            unknown_fate.append(t.task_id)
            continue
        if final == "FAILURE" and t.expect == "SUCCESS" and not t.maybe_cancelled:
            stats["failed_unexpectedly"] += 1
            findings.append(
                Finding(
                    NAME,
                    "failed-unexpectedly",
                    [t.task_id],
                    f"task {t.task_id} was expected to succeed, nobody cancelled it, and it ended FAILURE. "
                    + failure_hint(_error_of(t, history)),
                    {
                        "submit": ack.to_dict(),
                        "error": _error_of(t, history),
                        "final_source": t.final_source,
                        "drain": t.drain.to_dict() if t.drain else None,
                        "ledger": t.ledger.to_dict() if t.ledger else None,
                    },
                )
            )
            continue
        stats["ok"] += 1

    where = history.locations()
    for t in acked:
        if not gone_twice(where.get(t.task_id)) or config.is_terminal(t.final_state):
            continue
        loc = where[t.task_id]["second"]
        stats["lost"] += 1
        findings.append(
            Finding(
                NAME,
                "gone",
                [t.task_id],
                f"task {t.task_id} was accepted and is gone: it was still {t.final_state} after the heal, and "
                f"twice, a second apart, it was {loc['detail']}. {location_hint('gone')}",
                {"location": where[t.task_id], "final_state": t.final_state,
                 "submit": t.first_ack.to_dict() if t.first_ack else None},
            )
        )
    attribution = attribute_unacknowledged(history, tasks, config)
    for tid in attribution.from_unknown_submits:
        row = tasks[tid].ledger
        assert row is not None
        stats["unknown_submits_in_ledger"] += 1
        cause = attribution.by_key.get(tid) or [attribution.by_time[tid]]
        if config.is_terminal(row.state):
            stats["recovered"] += 1
            continue
        findings.append(
            Finding(
                NAME,
                "unknown-submit-incomplete",
                [tid],
                f"a submit with unknown outcome created task {tid}, which never finished (ledger state {row.state})",
                {
                    "submits": op_evidence(cause),
                    "ledger": row.to_dict(),
                    "matched_by": "idempotency_key" if tid in attribution.by_key else "time",
                },
            )
        )

    valid: Validity
    if findings:
        valid = False
    elif unknown_fate or not acked:
        valid = UNKNOWN
        stats["undecided"] = (
            f"no final read nor ledger row for {len(unknown_fate)} task(s)"
            if acked
            else "no submit was acknowledged"
        )
        if not acked:
            stats["applicable"] = False  # nothing was accepted, so nothing can be lost or stuck: abstain
        stats["unknown_fate_tasks"] = unknown_fate[: config.max_evidence]
    else:
        valid = True
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)
