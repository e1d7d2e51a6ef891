"""``python -m chaos.proxy`` as a real process: ready line, works, and SIGTERM leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chaos.cluster.ports import free_port
from chaos.proxy.client import ToxiproxyClient

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        pytest.fail(f"no ready line; stderr: {proc.stderr.read() if proc.stderr else ''}")
    prefix = "toxiproxy listening on 127.0.0.1:"
    assert line.startswith(prefix), line
    return proc, int(line[len(prefix) :])


def listening_ports(pid: int) -> set[int]:
    process = psutil.Process(pid)
    conns = (
        process.net_connections("tcp") if hasattr(process, "net_connections") else process.connections("tcp")
    )
    return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_serves_and_stops_cleanly(redis_port: int, sig: signal.Signals) -> None:
    proc, api_port = start("--listen", "127.0.0.1:0")
    try:
        with ToxiproxyClient(f"http://127.0.0.1:{api_port}") as client:
            proxy = client.create("redis", "127.0.0.1:0", f"127.0.0.1:{redis_port}")
            assert listening_ports(proc.pid) == {api_port, proxy.port}
            conn = socket.create_connection((proxy.host, proxy.port), timeout=2)
            conn.sendall(b"PING\r\n")
            assert conn.recv(7) == b"+PONG\r\n"
            client.cut(proxy)  # a held connection must not keep the process alive
            conn.sendall(b"PING\r\n")
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert conn.recv(7) == b""  # the client side was closed
        conn.close()
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert refused(api_port) and refused(proxy.port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_host_port_flags_and_config(tmp_path: Path, redis_port: int) -> None:
    api_port = free_port()
    config = tmp_path / "toxiproxy.json"
    config.write_text(
        json.dumps([{"name": "r", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{redis_port}"}])
    )
    proc, port = start("--host", "127.0.0.1", "--port", str(api_port), "--config", str(config))
    try:
        assert port == api_port
        with ToxiproxyClient(f"http://127.0.0.1:{port}") as client:
            proxy = client.get("r")
            assert proxy.enabled and proxy.port > 0
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_reports_busy_port(redis_port: int) -> None:
    start_time = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "chaos.proxy", "--listen", f"127.0.0.1:{redis_port}"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr
    assert time.monotonic() - start_time < 20
