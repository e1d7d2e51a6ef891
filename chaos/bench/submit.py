"""The submit path against a bare endpoint, in the same run (``chaos bench --only submit``).

A submit's floor on this machine is what a bare FastAPI endpoint costs: a bearer check and one Redis LPUSH
through the same fault-proxy link the target's API uses. The bench writes that endpoint to a temp dir, serves it
with uvicorn beside the target's API, and loads both alike: throughput and latency percentiles at each level of
concurrent connections, and the target's ratio to the bare endpoint. The target runs without workers meanwhile
(its tasks only queue), so what is measured is the submit path, not the CPU its workers take.

The load generator is ``wrk`` where installed (C, not the bottleneck); otherwise several client processes with
keep-alive connections (``generator`` says which: their own CPU narrows the gap between the two endpoints).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chaos.bench.table import pair_range
from chaos.cluster.ports import free_port
from chaos.stats import summary
from chaos.waiting import wait_until

BARE_APP = '''"""Bare submit endpoint for chaos bench: a bearer check and one Redis LPUSH (written by chaos/bench)."""
import os
import uuid

import redis.asyncio as redis
from fastapi import FastAPI, Header, HTTPException

app = FastAPI()
TOKEN = os.environ.get("BARE_TOKEN", "")
r = redis.Redis.from_url(os.environ["BARE_REDIS_URL"])


@app.post("/submit", status_code=202)
async def submit(body: dict, authorization: str | None = Header(default=None)) -> dict:
    if TOKEN and authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, "bad token")
    task_id = uuid.uuid4().hex
    await r.lpush("chaos-bench-bare-submit", task_id)
    return {"task_id": task_id}
'''
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, p50/p90/p99 (ms) and non-2xx answers from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise OSError(f"wrk printed no rate: {out[-300:]!r}")
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": round(float(rps.group(1)), 1), "p50_ms": pct.get(50), "p90_ms": pct.get(90),
            "p99_ms": pct.get(99), "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0}


def _wrk(url: str, body: dict[str, Any], headers: dict[str, str], connections: int, seconds: float,
         method: str, workdir: Path) -> dict[str, Any]:
    script = workdir / "submit.lua"
    lines = [f"wrk.method = {json.dumps(method)}", f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = max(1, min(2, connections))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    return parse_wrk(out)


def _client_process(args: tuple[str, str, bytes, dict[str, str], int, float]) -> tuple[int, int, list[float]]:
    """One load process: ``connections`` keep-alive http.client connections in threads, until the deadline."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    url, method, payload, headers, connections, deadline = args
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def loop() -> None:
        conn = http.client.HTTPConnection(host, parts.port, timeout=10)
        mine: list[float] = []
        bad = 0
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                conn.request(method, parts.path, body=payload, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    bad += 1
                else:
                    mine.append((time.perf_counter() - t0) * 1000.0)
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(host, parts.port, timeout=10)
        conn.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), failures[0], latencies


_started: Any = None  # in a load process: the barrier all of them meet at before the clock starts


def _join(barrier: Any) -> None:
    global _started
    _started = barrier


def _warm(_: int) -> None:
    """One per process: returns once every load process has started and imported this module."""
    _started.wait(60)


def _processes(url: str, body: dict[str, Any], headers: dict[str, str], connections: int, seconds: float,
               method: str) -> dict[str, Any]:
    procs = max(1, min(4, connections))
    share = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    payload = json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **headers}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs, initializer=_join, initargs=(ctx.Barrier(procs),)) as pool:
        pool.map(_warm, range(procs), chunksize=1)  # every process up and waiting together: the clock starts now
        deadline = time.time() + seconds
        parts = pool.map(_client_process, [(url, method, payload, hdrs, n, deadline) for n in share])
    lat = [x for _, _, xs in parts for x in xs]
    pct = {k: None if v is None else round(v, 2) for k, v in summary(lat).items()}
    return {"rps": round(sum(n for n, _, _ in parts) / seconds, 1), "p50_ms": pct["p50"], "p90_ms": pct["p90"],
            "p99_ms": pct["p99"], "non_2xx": sum(b for _, b, _ in parts), "socket_errors": 0}


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "client processes"


def load(url: str, body: dict[str, Any], headers: dict[str, str], connections: int, seconds: float,
         method: str, workdir: Path) -> dict[str, Any]:
    if shutil.which("wrk"):
        return _wrk(url, body, headers, connections, seconds, method, workdir)
    return _processes(url, body, headers, connections, seconds, method)


class BareEndpoint:
    """The bare FastAPI endpoint, served by uvicorn on loopback until ``close``."""

    def __init__(self, workdir: Path, redis_url: str, token: str | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "chaos_bench_bare_submit.py").write_text(BARE_APP)
        self.port = free_port()
        env = {**os.environ, "BARE_REDIS_URL": redis_url, "BARE_TOKEN": token or "",
               "PYTHONPATH": str(workdir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "chaos_bench_bare_submit:app", "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning", "--no-access-log"], cwd=workdir, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/submit"

    def wait_ready(self, post: Callable[[str], int], timeout: float = 20.0) -> None:

        def answers() -> bool:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise OSError(f"the bare endpoint exited: {err[-300:]}")
            try:
                return post(self.url) < 300
            except (OSError, httpx.HTTPError):  # not listening yet
                return False

        if not wait_until(answers, timeout, 0.1, error=None):
            raise OSError(f"the bare endpoint did not answer within {timeout:g} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def measure_submit(submit_url: str, method: str, body: dict[str, Any], headers: dict[str, str], redis_url: str,
                   token: str | None, workdir: Path, levels: tuple[int, ...] = (10, 100), seconds: float = 8.0,
                   repeats: int = 1, say: Callable[[str], None] = print) -> dict[str, Any]:
    """{level: {"target": stats, "bare": stats, "ratio", "ratio_runs"}}: ``repeats`` pairs of runs back to back,
    each pair's ratio its own (both sides met the same moment of a shared VM, whose speed moved by a third between
    runs here), ``ratio`` their median; the stats are each side's median run. The generator is in ``settings``."""
    bare = BareEndpoint(workdir / "bare", redis_url, token)
    try:
        with httpx.Client(timeout=5.0) as client:
            bare.wait_ready(lambda url: client.post(url, json=body, headers=headers).status_code)
        out: dict[str, Any] = {}
        for level in levels:
            runs: dict[str, list[dict[str, Any]]] = {"target": [], "bare": []}
            for i in range(repeats):  # in pairs, which goes first alternating (ABBA): a VM's drift cancels out
                for side in ("target", "bare") if i % 2 == 0 else ("bare", "target"):
                    runs[side].append(load(submit_url, body, headers, level, seconds, method, workdir)
                                      if side == "target" else
                                      load(bare.url, body, headers, level, seconds, "POST", workdir))
            row: dict[str, Any] = {side: _median_run(rs) for side, rs in runs.items()}
            row["ratio_runs"] = [round(t["rps"] / b["rps"], 3) for t, b in zip(runs["target"], runs["bare"],
                                                                            strict=True) if b["rps"]]
            row["ratio"] = round(statistics.median(row["ratio_runs"]), 3) if row["ratio_runs"] else None
            out[str(level)] = row
            t, b = row["target"], row["bare"]
            say(f"    {level} connections: target {t['rps']:.0f} req/s p99 {t['p99_ms']} ms, bare {b['rps']:.0f} "
                f"req/s p99 {b['p99_ms']} ms, ratio {row['ratio']}{pair_range(row)}")
        out["settings"] = {"generator": generator(), "seconds": seconds, "repeats": repeats, "levels": list(levels)}
        return out
    finally:
        bare.close()


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its percentiles belong together)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    mid = ordered[len(ordered) // 2]
    return {**mid, "rps_runs": [r["rps"] for r in runs], "rps_median": statistics.median(r["rps"] for r in runs)}
