"""Recovery times: a worker SIGKILLed mid-task, Redis restarted, the API killed and started again."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import httpx

from chaos.bench.api import TargetApi
from chaos.bench.broker import drain
from chaos.bench.figures import median, rounded
from chaos.bench.polling import wait_for
from chaos.target import TERMINAL_STATES


def _worker_of(cluster: Any, name: str) -> Any:
    short = name.split("@", 1)[0]
    for w in cluster.workers:
        if w.name == short:
            return w
    return None


def recover_worker_sigkill(cluster: Any, api: TargetApi) -> float:
    """SIGKILL the worker running a ``recovery_kind`` task; seconds until the ledger shows it running again."""
    since = time.time() - 0.001
    tid = api.task_id(api.submit(api.plan.recovery_kind))

    def running() -> dict[str, Any] | None:
        for t in api.ledger(since):
            if t["task_id"] == tid and t["executions"] and t["executions"][-1]["finished_at"] is None:
                return dict(t["executions"][-1])
        return None
    ex = wait_for(running, 30, "the long task to start", 0.05)
    time.sleep(0.3)
    victim = _worker_of(cluster, str(ex["worker"])) or cluster.workers[0]
    t_kill = time.time()
    victim.kill(signal.SIGKILL)

    def rerun() -> float | None:
        for t in api.ledger(since):
            if t["task_id"] == tid:
                later = [e for e in t["executions"] if e["attempt"] > ex["attempt"] and e.get("started_at")]
                if later:
                    return float(later[0]["started_at"])
        return None
    started = wait_for(rerun, 60, "the killed task to run again", 0.05)
    victim.start()
    wait_for(lambda: next(t for t in api.ledger(since) if t["task_id"] == tid)["state"] in TERMINAL_STATES, 60,
          "the recovered task to finish", 0.2)
    return started - t_kill


def recover_redis_restart(cluster: Any, api: TargetApi) -> float:
    """Stop and start Redis; seconds from its start to the first task submitted in celery mode finishing."""
    cluster.redis.stop()
    time.sleep(1.0)
    cluster.redis.start()
    t_start = time.time()
    since = t_start - 0.001

    def published() -> str | None:
        try:
            reply = api.submit()
        except httpx.HTTPError:  # a fail-fast target may refuse until it has reconnected
            return None
        return api.task_id(reply) if api.mode(reply) in ("celery", None) else None

    tid = wait_for(published, 60, "the API to publish to Redis again after its restart")
    end = api.finished_at([tid], since, timeout=120, success_only=True)
    drain(cluster, api, broker=False)
    return end - t_start


def recover_api_kill(cluster: Any, api: TargetApi) -> tuple[float, float]:
    """SIGKILL the API, start it again: (start call -> serving, kill -> serving); serving = ``api_answers``."""
    from chaos.cluster.base import api_answers

    t_kill = time.monotonic()
    cluster.api.kill(signal.SIGKILL)
    t_call = time.monotonic()
    cluster.api.spawn()
    wait_for(lambda: api_answers(api.url, api.http.probe_path, timeout=0.5), 60, "the API to serve again", 0.01)
    t_ok = time.monotonic()
    return t_ok - t_call, t_ok - t_kill


def measure_recovery(c: Any, api: TargetApi, repeats: int, section: Callable[[str, Callable[[], Any]], Any],
                     say: Callable[[str], None]) -> dict[str, Any]:
    rec: dict[str, list[float]] = {"worker_sigkill_s": [], "redis_restart_s": [], "api_restart_s": [],
                                   "api_kill_to_serving_s": []}
    skipped: dict[str, str] = {}
    if not api.has_ledger:
        skipped["worker_sigkill_s"] = ("needs the target's ledger (http.ledger_path) to see which worker runs the "
                                       "task and when it runs again")
    for _ in range(repeats):
        if "worker_sigkill_s" not in skipped:
            v = section("recovery.worker_sigkill", lambda: recover_worker_sigkill(c, api))
            if v is not None:
                rec["worker_sigkill_s"].append(v)
            c.heal()
        v = section("recovery.redis_restart", lambda: recover_redis_restart(c, api))
        if v is not None:
            rec["redis_restart_s"].append(v)
        c.heal()
        v = section("recovery.api_kill", lambda: recover_api_kill(c, api))
        if v is not None:
            rec["api_restart_s"].append(v[0])
            rec["api_kill_to_serving_s"].append(v[1])
        c.heal()
    out: dict[str, Any] = {}
    for k, xs in rec.items():
        if k in skipped:
            out[k] = {"skipped": skipped[k]}
            say(f"    {k}: skipped ({skipped[k]})")
        elif xs:
            out[k] = {"median": rounded(median(xs), 3), "runs": [rounded(x, 3) for x in xs]}
            say(f"    {k}: {median(xs):.2f}s (runs {[round(x, 2) for x in xs]})")
    return out
