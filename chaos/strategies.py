"""Hypothesis strategies for task mixes and fault schedules.

Everything drawn is plain data (``TaskPlan``, ``FaultSpec``) so Hypothesis can shrink a failing run towards
fewer tasks, fewer faults, earlier times and the simplest kinds: the first kind of a target and the first fault
of the catalogue are the simplest. Times are drawn in tenths of a second to keep shrunk schedules readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import strategies as st

from chaos.nemesis import FAULTS, FaultSpec
from chaos.target import Target
from chaos.workload import TaskPlan

# The order matters: Hypothesis shrinks towards the front of a sampled_from list.
DEFAULT_FAULTS = (
    "kill-worker", "kill-child", "restart-worker", "term-worker", "pause-worker",
    "stop-redis", "restart-redis", "pause-redis", "client-kill",
    "cut", "latency", "reset-peer", "down",
    "kill-api", "restart-api",
)
LINK_NODES = ("workers_redis", "api_redis")
API_FAULTS = tuple(k for k, f in FAULTS.items() if f.targets == "api")  # kill-api, term-api, restart-api


def tenths(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.integers(int(lo * 10), int(hi * 10)).map(lambda n: n / 10)


def task_plans(target: Target, *, min_tasks: int = 1, max_tasks: int = 12, horizon: float = 3.0,
               cancels: bool = True, keys: bool = True) -> st.SearchStrategy[list[TaskPlan]]:
    """A mix of tasks: kind (so duration), priority, submit time, maybe a cancel, maybe an idempotency key."""
    lo, hi = target.http.priority_range if target.http else (0, 9)
    kinds = [k.name for k in target.kinds]
    cancel = st.none() | tenths(0.0, 2.0) if cancels else st.none()
    key = st.none() | st.sampled_from(["key-a", "key-b"]) if keys and target.supports("idempotency") is None else st.none()
    plan = st.builds(TaskPlan, kind=st.sampled_from(kinds), priority=st.integers(lo, hi),
                     at=tenths(0.0, horizon), cancel_after=cancel, idempotency_key=key).map(_same_body_per_key)
    return st.lists(plan, min_size=min_tasks, max_size=max_tasks)


def _same_body_per_key(plan: TaskPlan) -> TaskPlan:
    """A key names one request: two plans sharing a key share their kind and priority (a key reused with another
    body is a client error an API may refuse, 409, not a resubmit)."""
    if plan.idempotency_key is None:
        return plan
    return replace(plan, idempotency_key=f"{plan.idempotency_key}-{plan.kind}-{plan.priority}")


def fault_specs(*, kinds: Sequence[str] = DEFAULT_FAULTS, workers: int = 2, horizon: float = 3.0,
                max_duration: float = 3.0, api: bool = True) -> st.SearchStrategy[FaultSpec]:
    """One fault: which, on which node or link, when, for how long.

    ``api=False`` (a target without an HTTP API, ``cluster.api is None``) leaves out the faults of the API node.
    """
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        raise ValueError(f"unknown faults {unknown}")
    if not api:
        kinds = [k for k in kinds if k not in API_FAULTS]
        if not kinds:
            raise ValueError("every fault given targets the API node, and the target has no API")

    def node_for(kind: str) -> st.SearchStrategy[str]:
        t = FAULTS[kind].targets
        if t == "worker":
            return st.sampled_from([f"worker-{i}" for i in range(max(1, workers))])
        if t == "link":
            return st.sampled_from(LINK_NODES)
        return st.just(t)

    return st.sampled_from(list(kinds)).flatmap(
        lambda k: st.builds(FaultSpec, kind=st.just(k), node=node_for(k), at=tenths(0.0, horizon),
                            duration=tenths(0.2, max_duration)))


def schedules(*, max_faults: int = 3, overlapping: bool = True, **kw: object) -> st.SearchStrategy[list[FaultSpec]]:
    """A fault schedule. Without ``overlapping``, each fault starts after the previous one has healed.

    Keywords go to ``fault_specs`` (``kinds``, ``workers``, ``horizon``, ``max_duration``, ``api``)."""
    faults = st.lists(fault_specs(**kw), min_size=0, max_size=max_faults)  # type: ignore[arg-type]
    if overlapping:
        return faults.map(lambda fs: sorted(fs, key=lambda f: f.at))
    return faults.map(_serialise)


def _serialise(faults: list[FaultSpec]) -> list[FaultSpec]:
    out, t = [], 0.0
    for f in sorted(faults, key=lambda f: f.at):
        at = max(f.at, t)
        out.append(FaultSpec(f.kind, f.node, at, f.duration, f.params))
        t = at + f.duration + 0.5
    return out
