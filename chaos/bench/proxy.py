"""What the fault proxy costs a Redis link with no toxics: ``redis-benchmark`` straight at Redis and through the
proxy, in the same run, at a few client counts (``chaos bench --only proxy``).

Every scenario puts the proxy on every Redis link, so its per-request cost is paid by the target all the time, not
only under faults. The load generator is ``redis-benchmark`` (C, not the bottleneck); without it the section is
skipped with the reason. Redis and the proxy are our own processes on loopback, stopped afterwards.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
from typing import Any

from chaos.cluster.ports import free_port
from chaos.proxy.client import ToxiproxyClient
from chaos.waiting import wait_until

OPS = "set,get"


def _ops_per_s(port: int, clients: int, requests: int) -> float:
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n",
                          str(requests), "-t", OPS, "-q"], capture_output=True, text=True, timeout=300).stdout
    rates = [float(v) for v in re.findall(r"([\d.]+) requests per second", out)]
    if not rates:
        raise OSError(f"redis-benchmark printed no rate: {out[-200:]!r}")
    return statistics.fmean(rates)


def measure_proxy(clients: tuple[int, ...] = (1, 50), requests: int = 50_000, repeats: int = 3) -> dict[str, Any]:
    """{clients: {direct_ops_s, proxied_ops_s, ratio, runs}} (medians of interleaved runs), or {"skipped": why}."""
    for tool in ("redis-benchmark", "redis-server"):
        if shutil.which(tool) is None:
            return {"skipped": f"{tool} is not installed (Debian: apt-get install redis-tools redis-server)"}
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([sys.executable, "-m", "chaos.proxy", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
        if "listening on" not in line:
            raise OSError(f"the proxy did not start: {line!r}")
        listen = free_port()
        with ToxiproxyClient("http://" + line.split()[-1]) as api:
            api.create("bench", f"127.0.0.1:{listen}", f"127.0.0.1:{redis_port}")
        _wait_for_redis(redis_port)
        out: dict[str, Any] = {}
        for n in clients:
            direct, proxied = [], []
            for _ in range(repeats):  # interleaved: a noisy neighbour hurts both sides alike
                direct.append(_ops_per_s(redis_port, n, requests))
                proxied.append(_ops_per_s(listen, n, requests))
            d, p = statistics.median(direct), statistics.median(proxied)
            out[str(n)] = {"direct_ops_s": round(d), "proxied_ops_s": round(p), "ratio": round(p / d, 3),
                           "runs": {"direct": [round(x) for x in direct], "proxied": [round(x) for x in proxied]}}
        out["settings"] = {"ops": OPS, "requests": requests, "repeats": repeats, "event_loop": _loop_name()}
        return out
    finally:
        for proc in (proxy, redis):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait_for_redis(port: int, timeout: float = 10.0) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        if not wait_until(client.ping, timeout, 0.1, ignore=redis.RedisError, error=None):
            raise OSError(f"redis-server did not answer within {timeout:g} s")
    finally:
        client.close()


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
