"""Stuck tasks: acknowledged, yet after the cluster healed and the run quiesced they are still not finished.

The final state is the last drain read, else the ledger's state, else the result backend's (see ``analysis``).
NOT_FOUND is a lost task, judged by ``lost``, not here; so is a task the broker inspector found nowhere in both
of its looks (``gone``). Each finding says where the task is (running, held, unacked, queued: see
``chaos.inspector``) and the fix that goes with it, and when it was decided: at the deadline, or earlier when it
could not finish by then (``chaos.settle``). A task with no final state at all is undecided (unknown).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaos.checkers.analysis import acknowledged, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.explain import location_hint, stuck_hint
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity
from chaos.history import NOT_FOUND, History

NAME = "stuck"


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    acked = acknowledged(task_lifecycles(history))
    faults = [w.name for w in history.fault_windows()]
    where = history.locations()
    settled = history.settled()
    findings: list[Finding] = []
    final_states: Counter[str] = Counter()
    undecided: list[str] = []
    stuck = 0
    for t in acked:
        final = t.final_state
        if final is None:
            undecided.append(t.task_id)
            continue
        final_states[final] += 1
        if final == NOT_FOUND or config.is_terminal(final):
            continue
        if gone_twice(where.get(t.task_id)):
            continue  # not stuck: gone, and ``lost`` says so
        stuck += 1
        loc = (where.get(t.task_id) or {}).get("second")
        why = (f"It is {loc['detail']}. {location_hint(loc['where'])}" if loc
               else stuck_hint(final, faults))
        when = (f"at t={settled[t.task_id]['at']:.1f}s ({t.final_source} read), decided before the quiesce "
                "deadline as it could not finish by then" if t.task_id in settled
                else f"when the run ended ({t.final_source} read after the heal and the quiesce deadline)")
        if len(findings) < config.max_evidence:
            findings.append(
                Finding(
                    NAME,
                    "stuck",
                    [t.task_id],
                    f"task {t.task_id} was accepted and still {final} {when}, never reaching a terminal state. "
                    + why,
                    {
                        "final_state": final,
                        "final_source": t.final_source,
                        "drain": t.drain.to_dict() if t.drain else None,
                        "ledger": t.ledger.to_dict() if t.ledger else None,
                        "statuses": [o.to_dict() for o in t.observations][-10:],
                        "location": loc,
                    },
                )
            )
    stats: dict[str, Any] = {
        "acknowledged": len(acked),
        "stuck": stuck,
        "terminal": sum(n for s, n in final_states.items() if config.is_terminal(s)),
        "unknown_fate": len(undecided),
        "final_states": dict(final_states),
    }
    valid: Validity
    if stuck:
        valid = False
    elif undecided or not acked:
        valid = UNKNOWN
        stats["undecided"] = (
            f"no final read nor ledger row for {len(undecided)} task(s)"
            if acked
            else "no submit was acknowledged"
        )
        if not acked:
            stats["applicable"] = False  # nothing was accepted, so nothing can be lost or stuck: abstain
    else:
        valid = True
    return CheckResult(NAME, valid, findings, stats)


def gone_twice(seen: dict[str, Any] | None) -> bool:
    """The inspector found the task nowhere (no queue, not unacked, no live worker) in both of its looks."""
    return bool(seen) and all((seen or {}).get(k, {}).get("where") == "gone" for k in ("first", "second"))

