"""Execution throughput: a backlog of tasks submitted through the target's API, then the same count through bare
Celery, each queued before its workers start and timed at its steady finish rate once every worker is ready."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from chaos.bench.api import TargetApi
from chaos.bench.bare import BareWorkers
from chaos.bench.broker import drain
from chaos.bench.figures import median, rounded
from chaos.bench.polling import wait_for
from chaos.errors import ChaosError


async def _submit_many(api: TargetApi, n: int, clients: int = 20) -> list[str]:
    ids: list[str] = []
    todo = iter(range(n))
    http, body = api.http, api.body()
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth, timeout=60.0,
                                 limits=httpx.Limits(max_connections=clients)) as cl:
        async def one() -> None:
            for _ in todo:
                r = await cl.request(http.submit_method, http.submit_path, json=body)
                r.raise_for_status()
                api.accepted += 1
                ids.append(api.task_id(r.json()))
        await asyncio.gather(*(one() for _ in range(clients)))
    return ids


def steady_rate(finishes: list[float], after: float | None = None) -> float:
    """Tasks per second between the 10th and the 90th percentile finish of a backlog: the workers' start (each
    comes up at its own moment) and the last stragglers do not count.

    ``after``: when the last worker reported ready. Only the finishes from then on count, when at least a fifth
    of the backlog is left by then: until every worker is up, the others' start-up (importing the app, forking
    the pool) shares the cores with the first ones' work, and with a backlog of a few seconds that was most of
    the window, so an app that imports more looked slower at running tasks."""
    t = sorted(finishes)
    if after is not None:
        later = [x for x in t if x >= after]
        if len(later) >= max(3, len(t) // 5):
            t = later
    if len(t) < 3:
        raise ChaosError(f"{len(t)} finish times: too few for a rate")
    i = int(0.1 * (len(t) - 1))
    j = max(math.ceil(0.9 * (len(t) - 1)), i + 1)
    return (j - i) / max(t[j] - t[i], 1e-6)


def api_throughput(cluster: Any, api: TargetApi, n: int, workers: int) -> tuple[float, str]:
    """(tasks/s, method). With a ledger: ``n`` tasks are submitted through the API while the target's workers are
    stopped, then ``workers`` start and the backlog's steady finish rate is taken from the ledger (the submits,
    which have a section of their own, and the workers' start do not count). Without one: end to end, submits
    and status reads while the workers run (the client's own speed is part of that figure)."""
    if not api.has_ledger:
        cluster.set_worker_count(workers)
        t0 = time.time()
        ids = asyncio.run(_submit_many(api, n))
        return n / (api.finished_at(ids, t0 - 0.001) - t0), "end to end through the API (no ledger)"
    cluster.set_worker_count(0)
    since = time.time() - 0.001
    ids = asyncio.run(_submit_many(api, n))
    cluster.set_worker_count(workers)  # returns once every worker is ready
    ready = time.time()
    return (steady_rate(api.finish_times(ids, since), after=ready),
            "queued backlog, steady finish rate once every worker is ready (ledger)")


def bare_throughput(bare: BareWorkers, cluster: Any, n: int, work_s: float, workers: int, concurrency: int) -> float:
    """The same backlog of ``n`` bare tasks, queued before the bare workers start, at its steady finish rate."""
    key = f"bench:done:{uuid.uuid4().hex}"
    r = cluster.redis.client(timeout=5.0)
    try:
        for _ in range(n):
            bare.send(key, work_s)
        bare.start(workers, concurrency)  # returns once every worker is ready
        ready = time.time()
        try:
            wait_for(lambda: r.llen(key) >= n, 300, f"{n} bare tasks to finish", 0.05)
        finally:
            bare.stop()
        finishes = [float(x) for x in r.lrange(key, 0, -1)]
        r.delete(key)
    finally:
        r.close()
    return steady_rate(finishes, after=ready)


def measure_throughput(cluster: Any, api: TargetApi, bare: BareWorkers, n: int, work_s: float | None,
                       worker_counts: list[int], repeats: int, say: Callable[[str], None], label: str,
                       bare_skipped: str | None = None) -> dict[str, Any]:
    """API then bare throughput at each worker count; ``work_s`` None: the bare run is skipped (``bare_skipped``)."""
    out: dict[str, Any] = {}
    conc = cluster.target.worker_concurrency
    for w in worker_counts:
        cluster.set_worker_count(w)
        drain(cluster, api)
        api_runs, method = [], ""
        for _ in range(repeats):
            rate, method = api_throughput(cluster, api, n, w)
            api_runs.append(rate)
        a = median(api_runs)
        v: dict[str, Any] = {"tasks": n, "api_tasks_per_s": rounded(a, 2), "bare_tasks_per_s": None, "ratio": None,
                             "api_runs": [rounded(x, 2) for x in api_runs], "bare_runs": [], "method": method}
        if work_s is None:
            v["bare_skipped"] = bare_skipped or "the bare task's duration is unknown"
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s; bare skipped ({v['bare_skipped']})")
        else:
            cluster.set_worker_count(0)
            bare_runs = [bare_throughput(bare, cluster, n, work_s, w, conc) for _ in range(repeats)]
            b = median(bare_runs)
            v.update(bare_tasks_per_s=rounded(b, 2), ratio=rounded(a / b, 3), bare_runs=[rounded(x, 2) for x in bare_runs])
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s, bare {b:.1f}/s, ratio {a / b:.2f}")
        out[str(w)] = v
    return out
