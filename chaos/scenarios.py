"""The named scenarios: every row of the original release checklist, as a workload and a fault schedule.

They are built from the target's task kinds (the shortest and longest successful kinds, the failing one) and its
declared contract, so the same catalogue runs against any target: a scenario names the capabilities it needs
(``requires``), cancels are only sent to targets that declare a cancel, the quiesce deadline scales with the
target's ``timing.quiesce_s``, and broker outages are judged by the target's ``broker_outage`` promise.
Profiles (``chaos gate --profile``) are lists of these names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from chaos.checkers import CheckConfig
from chaos.errors import BadArguments
from chaos.nemesis import FaultSpec
from chaos.runner import Scenario
from chaos.target import Target
from chaos.workload import TaskPlan


@dataclass(frozen=True)
class Kinds:
    short: str
    long: str
    failing: str | None

    @classmethod
    def of(cls, target: Target) -> Kinds:
        ok = sorted((k for k in target.kinds if k.expect == "SUCCESS"), key=lambda k: k.units)
        if not ok:
            raise BadArguments(f"target {target.name!r} has no task kind that is expected to succeed")
        failing = next((k.name for k in target.kinds if k.expect == "FAILURE"), None)
        return cls(ok[0].name, ok[-1].name, failing)


def _spread(kind: str, n: int, every: float = 0.1, start: float = 0.0, **kw: object) -> list[TaskPlan]:
    return [TaskPlan(kind, at=round(start + i * every, 2), **kw) for i in range(n)]  # type: ignore[arg-type]


def _mix(k: Kinds, n: int = 8, every: float = 0.15) -> list[TaskPlan]:
    plans = []
    for i in range(n):
        kind = k.long if i % 2 else k.short
        plans.append(TaskPlan(kind, priority=i % 10, at=round(i * every, 2)))
    if k.failing:
        plans.append(TaskPlan(k.failing, at=0.2))
    return plans


Builder = Callable[[Target], Scenario]


def _q(t: Target, scale: float = 1.0) -> float:
    """The quiesce deadline of a scenario: the target's (30 s unless declared), scaled by what the scenario does."""
    return round(t.timing.quiesce_s * scale, 1)


def outage_check(t: Target) -> CheckConfig:
    """While the broker is away: a fallback target must accept every task; a fail-fast one may refuse them
    (the ``hung`` check of availability still wants an answer within ``broker_outage_within_s``)."""
    return CheckConfig(error_rate_max_in_faults=0.0 if t.broker_outage == "fallback" else 1.0)


def submit_status_cancel(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = [*_spread(k.short, 3), TaskPlan(k.long, at=0.1, cancel_after=0.0), TaskPlan(k.long, at=0.2,
                                                                                         cancel_after=0.3)]
    if k.failing:
        plans.append(TaskPlan(k.failing, at=0.3))
    plans.append(TaskPlan(k.short, at=0.4, idempotency_key="plan-key"))
    plans.append(TaskPlan(k.short, at=0.5, idempotency_key="plan-key"))
    return Scenario("submit-status-cancel", plans, [], quiesce=_q(t, 2 / 3), unknown_probes=3,
                    description="submit, poll, cancel a queued and a running task, a failing task, a keyed "
                                "resubmit, status of unknown ids")


def worker_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-restart", _mix(k), [FaultSpec("restart-worker", "worker-0", at=0.6, duration=0.1)],
                    description="graceful restart of a worker mid-task: its tasks finish or recover", quiesce=_q(t))


def worker_sigkill(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-sigkill", _mix(k), [FaultSpec("kill-worker", "worker-0", at=0.6, duration=1.0)],
                    description="SIGKILL a worker and its children mid-task: its tasks run again within seconds", quiesce=_q(t))


def pool_child_kill(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("pool-child-kill", _mix(k),
                    [FaultSpec("kill-child", "worker-0", at=0.6, duration=0.1),
                     FaultSpec("kill-child", "worker-1", at=1.2, duration=0.1)],
                    description="SIGKILL the pool child running a task: the task runs again, not a WorkerLostError", quiesce=_q(t))


def cold_shutdown(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-cold-shutdown", _mix(k), [FaultSpec("quit-worker", "worker-0", at=0.6, duration=0.5)],
                    description="SIGQUIT (cold shutdown) mid-task, then start again", quiesce=_q(t))


def api_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("api-restart", _mix(k, n=10, every=0.2), [FaultSpec("kill-api", "api", at=0.5, duration=1.0)],
                    requires=("api",),
                    description="SIGKILL the API mid-run and start it again: nothing accepted is lost", quiesce=_q(t))


def redis_down_fallback(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.short, 16, every=0.25)
    plans.append(TaskPlan(k.long, at=1.5, cancel_after=0.2))
    promise = ("submits keep working (fallback)" if t.broker_outage == "fallback"
               else "submits fail fast with a clear error")
    return Scenario("redis-down-fallback", plans, [FaultSpec("stop-redis", "redis", at=0.8, duration=2.5)],
                    quiesce=_q(t), check=outage_check(t), request_timeout=_answer_timeout(t),
                    description=f"stop Redis: {promise}, status works, all accepted tasks finish after")


def fallback_api_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 6, every=0.1, start=0.8) + _spread(k.short, 4, every=0.3, start=3.0)
    # Redis stays away until the short tasks (3.0-3.9 s) have been accepted by the restarted API, not longer:
    # every second of outage past that is a second later the verdict
    schedule = [FaultSpec("stop-redis", "redis", at=0.5, duration=4.0),
                FaultSpec("kill-api", "api", at=1.6, duration=0.6)]
    return Scenario("fallback-api-restart", plans, schedule, quiesce=_q(t, 4 / 3), requires=("fallback",),
                    description="Redis down, tasks accepted in fallback, then the API dies: they still finish")


def _answer_timeout(t: Target) -> float:
    """The client's patience during a broker outage: past the target's answer bound, so a hang is seen as one."""
    return round(t.broker_outage_within_s + 1.0, 2)


def redis_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 8, every=0.05) + _spread(k.short, 8, every=0.05, start=0.5)
    return Scenario("redis-restart-backlog", plans, [FaultSpec("restart-redis", "redis", at=1.0, duration=0.1)],
                    description="restart Redis (persistence on) with a backlog: queued tasks survive", quiesce=_q(t))


def redis_pause(t: Target) -> Scenario:
    k = Kinds.of(t)
    promise = "fall back" if t.broker_outage == "fallback" else "fail"
    return Scenario("redis-pause", _spread(k.short, 12, every=0.2),
                    [FaultSpec("pause-redis", "redis", at=0.5, duration=2.0)], check=outage_check(t),
                    request_timeout=_answer_timeout(t),
                    description=f"SIGSTOP Redis: publishes must not hang, submits {promise} within "
                                f"{t.broker_outage_within_s:g} s", quiesce=_q(t))


def broker_connections(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("broker-client-kill", _mix(k, n=10, every=0.2),
                    [FaultSpec("client-kill", "redis", at=0.5, duration=0.1),
                     FaultSpec("client-kill", "redis", at=1.5, duration=0.1)],
                    description="CLIENT KILL every broker connection twice: workers reconnect and consume again", quiesce=_q(t))


def network_cut(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("network-cut-workers", _mix(k, n=10, every=0.2),
                    [FaultSpec("cut", "workers_redis", at=0.5, duration=2.0),
                     FaultSpec("latency", "api_redis", at=0.3, duration=2.0, params={"latency": 20, "jitter": 10})],
                    description="blackhole the worker-Redis link, slow the API-Redis link", quiesce=_q(t))


def network_reset(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("network-reset", _mix(k, n=10, every=0.2),
                    [FaultSpec("reset-peer", "workers_redis", at=0.5, duration=1.0),
                     FaultSpec("down", "api_redis", at=1.0, duration=1.5)],
                    description="reset worker-Redis connections, take the API-Redis link down", quiesce=_q(t))


def durable_revoke(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 6, every=0.02)  # a backlog deeper than the workers' capacity
    plans += [TaskPlan(k.long, at=0.2 + i * 0.02, cancel_after=0.0) for i in range(4)]
    schedule = [FaultSpec("kill-worker", "worker-0", at=0.6, duration=0.8),
                FaultSpec("kill-worker", "worker-1", at=0.6, duration=0.8)]
    return Scenario("durable-revoke", plans, schedule, requires=("cancel",),
                    description="cancel queued tasks, then kill every worker: no cancelled task runs after", quiesce=_q(t))


def concurrent(n: int) -> Builder:
    def build(t: Target) -> Scenario:
        k = Kinds.of(t)
        plans = [TaskPlan(k.short, priority=i % 10, at=0.0) for i in range(n)]
        # the plan's bar: submit under 100 ms with 10 and with 100 tasks submitted at once (a profile's
        # [check] latency_p99_ms moves it, for a slower machine); the benchmarks give the figures behind it
        check = CheckConfig(latency_p99_ms=100.0, latency_min_samples=min(n, 20))  # a burst of n is the sample
        return Scenario(f"concurrent-{n}", plans, [], concurrency=n, quiesce=_q(t, 2), check=check,
                        description=f"{n} tasks submitted at once: each answered, submit p99 within the bar")

    return build


def concurrent_under_faults(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = [TaskPlan(k.short if i % 3 else k.long, priority=i % 10, at=round(i * 0.03, 2)) for i in range(100)]
    schedule = [FaultSpec("kill-worker", "worker-1", at=0.8, duration=0.5),
                FaultSpec("stop-redis", "redis", at=1.8, duration=1.5)]
    return Scenario("concurrent-100-faults", plans, schedule, concurrency=100, quiesce=_q(t, 3),
                    check=replace(outage_check(t), latency_p99_ms=10_000.0),
                    description="100 tasks while a worker dies and Redis goes away")


SCENARIOS: dict[str, Builder] = {
    "submit-status-cancel": submit_status_cancel,
    "worker-restart": worker_restart,
    "worker-sigkill": worker_sigkill,
    "pool-child-kill": pool_child_kill,
    "worker-cold-shutdown": cold_shutdown,
    "api-restart": api_restart,
    "redis-down-fallback": redis_down_fallback,
    "fallback-api-restart": fallback_api_restart,
    "redis-restart-backlog": redis_restart,
    "redis-pause": redis_pause,
    "broker-client-kill": broker_connections,
    "network-cut-workers": network_cut,
    "network-reset": network_reset,
    "durable-revoke": durable_revoke,
    "concurrent-10": concurrent(10),
    "concurrent-100": concurrent(100),
    "concurrent-100-faults": concurrent_under_faults,
}


#: The built-in ``default`` profile and the plan test: one row each of the original release checklist, every
#: fault family (worker, broker, network, api) in about two minutes on 2 cores.
DEFAULT_SCENARIOS: tuple[str, ...] = (
    "submit-status-cancel", "worker-sigkill", "pool-child-kill", "worker-restart", "api-restart",
    "worker-cold-shutdown", "redis-down-fallback", "fallback-api-restart", "redis-restart-backlog",
    "redis-pause", "broker-client-kill", "network-cut-workers", "network-reset", "durable-revoke",
    "concurrent-10", "concurrent-100",
)

#: The built-in ``release`` profile: the default's rows first, then every other scenario of the catalogue.
RELEASE_SCENARIOS: tuple[str, ...] = (*DEFAULT_SCENARIOS, *(s for s in SCENARIOS if s not in DEFAULT_SCENARIOS))

#: The built-in ``smoke`` profile: a quick look that the stack, a worker fault and a broker outage work at all.
SMOKE_SCENARIOS: tuple[str, ...] = ("submit-status-cancel", "worker-sigkill", "redis-down-fallback")


def build(name: str, target: Target, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Scenario ``name`` for ``target``; ``overrides`` (a profile's ``[check]`` keys) replace its built-in
    thresholds, looser or tighter. Cancels are dropped for a target that declares none (the scenario's
    ``requires`` says when that leaves nothing to test)."""
    try:
        s = SCENARIOS[name](target)
    except KeyError:
        raise BadArguments(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    if overrides:
        s.check = replace(s.check, **dict(overrides))
    if target.supports("cancel") is not None:
        s.plans = [replace(p, cancel_after=None) for p in s.plans]
    if target.supports("idempotency") is not None:
        s.plans = [replace(p, idempotency_key=None) for p in s.plans]
    return s


def missing(scenario: Scenario, target: Target) -> str | None:
    """Why ``target`` cannot take part in ``scenario`` (None when it can)."""
    reasons = [why for need in scenario.requires if (why := target.supports(need)) is not None]
    return "; ".join(reasons) or None
