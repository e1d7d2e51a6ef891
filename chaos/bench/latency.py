"""Submit latency: many concurrent clients submitting through the API, in celery mode or with Redis stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from chaos.bench.api import TargetApi
from chaos.bench.figures import median, percentile, rounded
from chaos.bench.polling import wait_for

MAX_SOCKETS = 1000


def requests_per_client(level: int, quick: bool) -> int:
    """Requests per client at a concurrency level (so every run has enough samples for a p99)."""
    if level == 1:
        return 20 if quick else 50
    if level <= 10:
        return 5 if quick else 10
    if level <= 100:
        return 1 if quick else 2
    return 1


async def _latency_run(api: TargetApi, clients: int, per_client: int, sockets: int) -> tuple[list[float], int, set[str]]:
    limits = httpx.Limits(max_connections=sockets, max_keepalive_connections=sockets)
    lat: list[float] = []
    errors = 0
    modes: set[str] = set()
    http, body = api.http, api.body()
    async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=60.0, headers=api.auth) as cl:
        async def one() -> None:
            nonlocal errors
            for _ in range(per_client):
                t = time.perf_counter()
                try:
                    r = await cl.request(http.submit_method, http.submit_path, json=body)
                    ok = r.is_success
                    if ok:
                        api.accepted += 1
                        mode = api.mode(r.json())
                        if mode is not None:
                            modes.add(mode)
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t) * 1000.0)
                errors += 0 if ok else 1
        await asyncio.gather(*(one() for _ in range(clients)))
    return lat, errors, modes


def measure_latency(api: TargetApi, levels: Iterable[int], repeats: int, quick: bool, say: Callable[[str], None],
                    mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in levels:
        per = requests_per_client(level, quick)
        sockets = min(level, MAX_SOCKETS)
        runs = []
        errors = 0
        seen: set[str] = set()
        for _ in range(repeats):
            lat, err, modes = asyncio.run(_latency_run(api, level, per, sockets))
            lat.sort()
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            assert p50 is not None and p99 is not None  # every run sends requests
            runs.append((p50, p99, max(lat)))
            errors += err
            seen |= modes
        out[str(level)] = {"p50_ms": rounded(median(r[0] for r in runs), 2), "p99_ms": rounded(median(r[1] for r in runs), 2),
                           "max_ms": rounded(median(r[2] for r in runs), 2), "requests": level * per,
                           "sockets": sockets, "errors": errors, "modes": sorted(seen),
                           "runs": [[rounded(x, 2) for x in r] for r in runs]}
        say(f"    {mode} x{level}: p50 {out[str(level)]['p50_ms']:.1f} ms, p99 {out[str(level)]['p99_ms']:.1f} ms, "
            f"max {out[str(level)]['max_ms']:.1f} ms ({level * per} requests/run, modes {sorted(seen)})")
    return out


def measure_fallback_latency(c: Any, api: TargetApi, levels: list[int], repeats: int, quick: bool,
                      say: Callable[[str], None]) -> dict[str, Any]:
    """Submit latency with Redis stopped: in fallback mode (``mode_field``), else once a submit is accepted."""
    if c.target.broker_outage != "fallback":
        return {"skipped": "the target declares broker_outage = \"fail-fast\": there is no fallback mode to measure"}
    c.redis.stop()
    try:
        if api.http.mode_field:
            wait_for(lambda: api.mode(api.submit()) == "fallback", 30, "fallback mode", 0.1)
        else:
            wait_for(api.submit, 30, "a submit accepted with Redis stopped", 0.1)
        return measure_latency(api, levels, repeats, quick, say, "fallback")
    finally:
        c.redis.start()
