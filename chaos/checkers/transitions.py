"""Illegal status transitions as clients saw them: PENDING -> STARTED (-> RETRY -> STARTED)* -> terminal.

Reads are samples, so states may be skipped (PENDING then SUCCESS is fine), but never go backwards, and a
terminal state never changes. Concurrent reads may legitimately be answered in any order, so two observations
are compared only when the first request *completed before* the second was *sent*. NOT_FOUND is ignored here:
it is a lost task and ``lost`` reports it (one anomaly, one finding). Statuses outside the known lifecycle are
counted in stats, not judged. Observations come from ok submits (their initial status), status reads and drains.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import Observation, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import CheckResult, Finding, cap_per_kind
from chaos.history import NOT_FOUND, History

NAME = "transitions"
TERMINAL_RANK = 2
NON_TERMINAL_RANKS = {"PENDING": 0, "RECEIVED": 0, "STARTED": 1, "RETRY": 1}


def rank(status: str, config: CheckConfig) -> int | None:
    """Position in the lifecycle; None for a status the model does not know."""
    if config.is_terminal(status):
        return TERMINAL_RANK
    return NON_TERMINAL_RANKS.get(status)


def legal(before: str, after: str, config: CheckConfig) -> bool:
    """May a task seen in ``before`` later be seen in ``after``?"""
    rb, ra = rank(before, config), rank(after, config)
    if rb is None or ra is None:
        return True
    if rb == TERMINAL_RANK:
        return after == before
    return ra >= rb


def first_violation(
    observations: list[Observation], config: CheckConfig
) -> tuple[int, tuple[Observation, Observation] | None]:
    """Count observations contradicting an earlier, non-overlapping one; return the count and the first pair.

    Sweep: completed-earlier observations enter by completion time, each later one is judged by its send time
    against the highest state already established (and the first terminal state, which must never change).
    """
    by_completion = sorted(observations, key=lambda o: o.pair.complete_time)
    by_invoke = sorted(observations, key=lambda o: o.pair.invoke_time)
    highest: Observation | None = None
    highest_rank = -1
    terminal: Observation | None = None
    i = 0
    count = 0
    first: tuple[Observation, Observation] | None = None
    for later in by_invoke:
        while i < len(by_completion) and by_completion[i].pair.complete_time < later.pair.invoke_time:
            earlier = by_completion[i]
            r = rank(earlier.status, config)
            if r is not None and r > highest_rank:
                highest, highest_rank = earlier, r
            if terminal is None and r == TERMINAL_RANK:
                terminal = earlier
            i += 1
        culprit = None
        if terminal is not None and not legal(terminal.status, later.status, config):
            culprit = terminal
        elif highest is not None and not legal(highest.status, later.status, config):
            culprit = highest
        if culprit is not None:
            count += 1
            if first is None:
                first = (culprit, later)
    return count, first


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    tasks = task_lifecycles(history)
    findings: list[Finding] = []
    stats: dict[str, Any] = {
        "tasks": 0,
        "observations": 0,
        "illegal": 0,
        "tasks_with_illegal": 0,
        "unknown_statuses": {},
    }
    for t in tasks.values():
        obs = [o for o in t.observations if o.status != NOT_FOUND]
        if not obs:
            continue
        stats["tasks"] += 1
        stats["observations"] += len(obs)
        for o in obs:
            if rank(o.status, config) is None:
                stats["unknown_statuses"][o.status] = stats["unknown_statuses"].get(o.status, 0) + 1
        count, pair = first_violation(obs, config)
        if pair is None:
            continue
        stats["illegal"] += count
        stats["tasks_with_illegal"] += 1
        before, after = pair
        findings.append(
            Finding(
                NAME,
                "illegal-transition",
                [t.task_id],
                f"task {t.task_id} was seen {before.status} and later {after.status}",
                {
                    "from": before.status,
                    "to": after.status,
                    "earlier": before.pair.to_dict(),
                    "later": after.pair.to_dict(),
                    "violations": count,
                    "statuses": [o.to_dict() for o in obs][:50],
                },
            )
        )
    return CheckResult(NAME, not findings, cap_per_kind(findings, config.max_evidence), stats)
