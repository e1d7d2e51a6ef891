"""End-to-end throughput: tasks through the target's API, then the same count through bare Celery."""

from __future__ import annotations

import asyncio
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


def api_throughput(api: TargetApi, n: int) -> float:
    since = time.time() - 0.001
    t0 = time.time()
    ids = asyncio.run(_submit_many(api, n))
    end = api.finished_at(ids, since)
    return n / (end - t0)


def bare_throughput(bare: BareWorkers, cluster: Any, n: int, work_s: float) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    r = cluster.redis.client(timeout=5.0)
    try:
        t0 = time.time()
        for _ in range(n):
            bare.send(key, work_s)
        wait_for(lambda: r.llen(key) >= n, 300, f"{n} bare tasks to finish", 0.05)
        end = max(float(x) for x in r.lrange(key, 0, -1))
        r.delete(key)
    finally:
        r.close()
    return n / (end - t0)


def measure_throughput(cluster: Any, api: TargetApi, bare: BareWorkers, n: int, work_s: float | None,
                       worker_counts: list[int], repeats: int, say: Callable[[str], None], label: str,
                       bare_skipped: str | None = None) -> dict[str, Any]:
    """API then bare throughput at each worker count; ``work_s`` None: the bare run is skipped (``bare_skipped``)."""
    out: dict[str, Any] = {}
    conc = cluster.target.worker_concurrency
    for w in worker_counts:
        cluster.set_worker_count(w)
        drain(cluster, api)
        api_runs = [api_throughput(api, n) for _ in range(repeats)]
        a = median(api_runs)
        v: dict[str, Any] = {"tasks": n, "api_tasks_per_s": rounded(a, 2), "bare_tasks_per_s": None, "ratio": None,
                             "api_runs": [rounded(x, 2) for x in api_runs], "bare_runs": []}
        if work_s is None:
            v["bare_skipped"] = bare_skipped or "the bare task's duration is unknown"
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s; bare skipped ({v['bare_skipped']})")
        else:
            cluster.set_worker_count(0)
            bare.start(w, conc)
            try:
                bare_runs = [bare_throughput(bare, cluster, n, work_s) for _ in range(repeats)]
            finally:
                bare.stop()
            b = median(bare_runs)
            v.update(bare_tasks_per_s=rounded(b, 2), ratio=rounded(a / b, 3), bare_runs=[rounded(x, 2) for x in bare_runs])
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s, bare {b:.1f}/s, ratio {a / b:.2f}")
        out[str(w)] = v
    return out
