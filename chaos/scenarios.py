"""The named scenarios: every row of the original release checklist, as a workload and a fault schedule.

They are built from the target's task kinds (the shortest and longest successful kinds, the failing one), so the
same catalogue runs against any target. Profiles (``chaos gate --profile``) are lists of these names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

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

# The plan's promise while the broker is away: the API still accepts every task (asyncio fallback).
ALWAYS_ACCEPTS = CheckConfig(error_rate_max_in_faults=0.0)


def submit_status_cancel(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = [*_spread(k.short, 3), TaskPlan(k.long, at=0.1, cancel_after=0.0), TaskPlan(k.long, at=0.2,
                                                                                         cancel_after=0.3)]
    if k.failing:
        plans.append(TaskPlan(k.failing, at=0.3))
    plans.append(TaskPlan(k.short, at=0.4, idempotency_key="plan-key"))
    plans.append(TaskPlan(k.short, at=0.5, idempotency_key="plan-key"))
    return Scenario("submit-status-cancel", plans, [], quiesce=20, unknown_probes=3,
                    description="submit, poll, cancel a queued and a running task, a failing task, a keyed "
                                "resubmit, status of unknown ids")


def worker_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-restart", _mix(k), [FaultSpec("restart-worker", "worker-0", at=0.6, duration=0.1)],
                    description="graceful restart of a worker mid-task: its tasks finish or recover")


def worker_sigkill(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-sigkill", _mix(k), [FaultSpec("kill-worker", "worker-0", at=0.6, duration=1.0)],
                    description="SIGKILL a worker and its children mid-task: its tasks run again within seconds")


def pool_child_kill(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("pool-child-kill", _mix(k),
                    [FaultSpec("kill-child", "worker-0", at=0.6, duration=0.1),
                     FaultSpec("kill-child", "worker-1", at=1.2, duration=0.1)],
                    description="SIGKILL the pool child running a task: the task runs again, not a WorkerLostError")


def cold_shutdown(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("worker-cold-shutdown", _mix(k), [FaultSpec("quit-worker", "worker-0", at=0.6, duration=0.5)],
                    description="SIGQUIT (cold shutdown) mid-task, then start again")


def api_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("api-restart", _mix(k, n=10, every=0.2), [FaultSpec("kill-api", "api", at=0.5, duration=1.0)],
                    description="SIGKILL the API mid-run and start it again: nothing accepted is lost")


def redis_down_fallback(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.short, 16, every=0.25)
    plans.append(TaskPlan(k.long, at=1.5, cancel_after=0.2))
    return Scenario("redis-down-fallback", plans, [FaultSpec("stop-redis", "redis", at=0.8, duration=2.5)],
                    quiesce=30, check=ALWAYS_ACCEPTS,
                    description="stop Redis: submits keep working (fallback), status works, all finish after")


def fallback_api_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 6, every=0.1, start=0.8) + _spread(k.short, 4, every=0.3, start=3.0)
    schedule = [FaultSpec("stop-redis", "redis", at=0.5, duration=5.0),
                FaultSpec("kill-api", "api", at=1.6, duration=0.6)]
    return Scenario("fallback-api-restart", plans, schedule, quiesce=40,
                    description="Redis down, tasks accepted in fallback, then the API dies: they still finish")


def redis_restart(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 8, every=0.05) + _spread(k.short, 8, every=0.05, start=0.5)
    return Scenario("redis-restart-backlog", plans, [FaultSpec("restart-redis", "redis", at=1.0, duration=0.1)],
                    description="restart Redis (persistence on) with a backlog: queued tasks survive")


def redis_pause(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("redis-pause", _spread(k.short, 12, every=0.2),
                    [FaultSpec("pause-redis", "redis", at=0.5, duration=2.0)], check=ALWAYS_ACCEPTS,
                    request_timeout=1.0,
                    description="SIGSTOP Redis: publishes must not hang, submits fall back within the timeout")


def broker_connections(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("broker-client-kill", _mix(k, n=10, every=0.2),
                    [FaultSpec("client-kill", "redis", at=0.5, duration=0.1),
                     FaultSpec("client-kill", "redis", at=1.5, duration=0.1)],
                    description="CLIENT KILL every broker connection twice: workers reconnect and consume again")


def network_cut(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("network-cut-workers", _mix(k, n=10, every=0.2),
                    [FaultSpec("cut", "workers_redis", at=0.5, duration=2.0),
                     FaultSpec("latency", "api_redis", at=0.3, duration=2.0, params={"latency": 20, "jitter": 10})],
                    description="blackhole the worker-Redis link, slow the API-Redis link")


def network_reset(t: Target) -> Scenario:
    k = Kinds.of(t)
    return Scenario("network-reset", _mix(k, n=10, every=0.2),
                    [FaultSpec("reset-peer", "workers_redis", at=0.5, duration=1.0),
                     FaultSpec("down", "api_redis", at=1.0, duration=1.5)],
                    description="reset worker-Redis connections, take the API-Redis link down")


def durable_revoke(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = _spread(k.long, 6, every=0.02)  # a backlog deeper than the workers' capacity
    plans += [TaskPlan(k.long, at=0.2 + i * 0.02, cancel_after=0.0) for i in range(4)]
    schedule = [FaultSpec("kill-worker", "worker-0", at=0.6, duration=0.8),
                FaultSpec("kill-worker", "worker-1", at=0.6, duration=0.8)]
    return Scenario("durable-revoke", plans, schedule,
                    description="cancel queued tasks, then kill every worker: no cancelled task runs after")


def concurrent(n: int) -> Builder:
    def build(t: Target) -> Scenario:
        k = Kinds.of(t)
        plans = [TaskPlan(k.short, priority=i % 10, at=0.0) for i in range(n)]
        # n submits land at the same instant: their latency is queueing, not the single-submit target of
        # 100 ms, so the bar is 100 ms per concurrent client (it catches a hang, not a slow machine); the
        # benchmarks report the real figures at 1/10/100/1000 clients.
        check = CheckConfig(latency_p99_ms=100.0 * n)
        return Scenario(f"concurrent-{n}", plans, [], concurrency=n, quiesce=60, check=check,
                        description=f"{n} tasks submitted at once (submit p99 bar {check.latency_p99_ms:.0f} ms)")

    return build


def concurrent_under_faults(t: Target) -> Scenario:
    k = Kinds.of(t)
    plans = [TaskPlan(k.short if i % 3 else k.long, priority=i % 10, at=round(i * 0.03, 2)) for i in range(100)]
    schedule = [FaultSpec("kill-worker", "worker-1", at=0.8, duration=0.5),
                FaultSpec("stop-redis", "redis", at=1.8, duration=1.5)]
    return Scenario("concurrent-100-faults", plans, schedule, concurrency=100, quiesce=90,
                    check=CheckConfig(latency_p99_ms=10_000.0),
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


def build(name: str, target: Target, check: CheckConfig | None = None) -> Scenario:
    try:
        s = SCENARIOS[name](target)
    except KeyError:
        raise BadArguments(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    if check is not None:  # the profile's thresholds, with the scenario's own promises on top
        s.check = replace(check, latency_p99_ms=max(check.latency_p99_ms, s.check.latency_p99_ms),
                          error_rate_max_in_faults=min(check.error_rate_max_in_faults,
                                                       s.check.error_rate_max_in_faults))
    if target.at_least_once:
        s.check = replace(s.check, duplicates_allowed=True)
    return s
