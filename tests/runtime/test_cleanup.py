"""Nothing of ours outlives a run: not after Ctrl-C, not after the owner is SIGKILLed (the next run sweeps it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chaos.cluster.cleanup import LABEL_OWNER, OWNER_VAR, remove_leftovers

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [pytest.param("local", id="local"), pytest.param("docker", id="docker", marks=pytest.mark.docker)]


def owned_by(pid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get(OWNER_VAR) == str(pid):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def containers_owned_by(pid: int) -> int:
    try:
        import docker

        client = docker.from_env(timeout=10)
        n = len(client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={pid}"}))
        client.close()
        return n
    except Exception:  # noqa: BLE001 - no daemon: no containers
        return 0


def start_up(backend: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "chaos.cli", "up", "--backend", backend, "--workers", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ctrl-C to stop" in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"chaos up did not come up (exit {proc.poll()})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_stops_everything(backend):
    proc = start_up(backend)
    assert owned_by(proc.pid), "the stack runs under the owner's mark"
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0
    assert owned_by(proc.pid) == [] and containers_owned_by(proc.pid) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crashed_owner_is_swept_by_the_next_run(backend):
    proc = start_up(backend)
    os.kill(proc.pid, signal.SIGKILL)  # no finalizer runs: like a pytest-timeout thread kill or an OOM kill
    proc.wait(10)
    left = owned_by(proc.pid)
    assert left or containers_owned_by(proc.pid), "a crash leaves things behind"
    if backend == "local":  # every node, the broker included (a retitled redis-server used to hide its mark)
        names = " ".join(" ".join(p.cmdline()) for p in left)
        assert "redis-server" in names and "uvicorn" in names and "celery" in names, names
    remove_leftovers()  # what every new run (pytest session start, chaos gate) does first
    deadline = time.monotonic() + 20
    while (owned_by(proc.pid) or containers_owned_by(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert owned_by(proc.pid) == [] and containers_owned_by(proc.pid) == 0
