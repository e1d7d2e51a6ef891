"""``scripts/setup.sh`` touches only what it makes: a Redis that was running before it still runs after it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from chaos.cluster.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"


def test_setup_never_kills_by_name_nor_stops_services():
    text = SETUP.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(pkill|killall)\b", code)
    assert not re.search(r"systemctl\s+(stop|kill|disable)|service\s+\S+\s+stop", code)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_foreign_redis_survives_setup(tmp_path):
    port = free_port()
    # a Redis the framework did not start: no mark in its environment, its own data dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_CHAOS")}
    foreign = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        r = subprocess.run(["bash", str(SETUP)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "CHAOS_SKIP_DOCKER": "1"})
        assert r.returncode == 0, r.stderr[-2000:]
        assert foreign.poll() is None, "setup.sh stopped a redis-server it did not start"
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(64).startswith(b"+PONG")
    finally:
        foreign.kill()
        foreign.wait(10)
