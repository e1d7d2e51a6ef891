"""Real-process fixtures for the data-sync service: Redis (AOF), Celery worker(s), uvicorn API.

Every process runs in its own process group; teardown SIGKILLs whole groups
and verifies nothing survived.  Readiness is real: Redis PING, API /health,
and worker heartbeats counted by /health.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
ADMIN = "admin-secret"
# The reference target's own tokens ([tool.celery-chaos.target.env] API_TOKENS in pyproject.toml; the chaos
# workload uses "chaos-token"), next to two test callers.
TARGET_TOKENS = {"chaos": "chaos-token", "other": "other-token"}
TOKENS = {"alice": "tok-alice", "bob": "tok-bob", **TARGET_TOKENS}
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    return out


class Proc:
    """A subprocess in its own process group (so SIGKILL can take the whole tree)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while _group_alive(self.pid) and time.monotonic() < deadline:
            self.signal_group(signal.SIGKILL)
            time.sleep(0.05)

    def terminate(self, timeout: float = 15) -> None:
        if self.popen is None or not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Stack:
    """Redis + N workers + API(s) sharing one SQLite file, all under ``tmp``."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.redis_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DATABASE_URL": f"sqlite:///{tmp / 'data-sync.db'}",
            "API_TOKENS": ",".join(f"{t}={c}" for c, t in TOKENS.items()),
            "ADMIN_TOKEN": ADMIN,
            "LEASE_SECONDS": "2",
            "ROW_WORK_MS": "10",
            "SWEEP_INTERVAL_SECONDS": "0.5",
            "PUBLISH_TIMEOUT_MS": "100",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env or {})
        self.procs: list[Proc] = []
        self.redis: Proc | None = None
        self.workers: list[Proc] = []
        self.api: Proc | None = None
        self.api_port = 0
        self._n = 0

    # ---------------------------------------------------------------- redis
    def start_redis(self) -> Proc:
        argv = [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--appendonly", "yes",
                "--appendfsync", "everysec", "--dir", str(self.tmp), "--save", "", "--protected-mode", "no"]
        self.redis = self._spawn("redis", argv)
        r = redis.Redis(port=self.redis_port, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._wait(lambda: r.ping(), 10, "redis ping", self.redis)
        return self.redis

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()

    # -------------------------------------------------------------- workers
    def start_worker(self, concurrency: int = 2, wait: bool = True) -> Proc:
        self._n += 1
        argv = [sys.executable, "-m", "celery", "-A", "service.celery_app", "worker", "--loglevel=info",
                "--queues=data_sync,scheduled", f"--concurrency={concurrency}", f"--hostname=worker-{self._n}@%h",
                "--without-mingle", "--without-gossip"]
        w = self._spawn(f"worker-{self._n}", argv)
        self.workers.append(w)
        if wait:
            self._wait(lambda: self._heartbeat_seen(f"{w.name}@", w.pid), 30, "worker heartbeat", w)
        return w

    def _heartbeat_seen(self, prefix: str, pid: int) -> bool:
        """The worker's own row in the ``workers`` table is fresh (read-only peek at the SQLite file)."""
        import sqlite3
        con = sqlite3.connect(f"file:{self.tmp / 'data-sync.db'}?mode=ro", uri=True, timeout=2)
        try:
            row = con.execute("SELECT last_seen FROM workers WHERE hostname LIKE ? AND pid = ?",
                              (prefix + "%", pid)).fetchone()
        finally:
            con.close()
        return row is not None and time.time() - row[0] < 2

    # ------------------------------------------------------------------ api
    def start_api(self, port: int | None = None, env: dict[str, str] | None = None, wait: bool = True) -> Proc:
        self.api_port = port or self.api_port or free_port()
        argv = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1",
                "--port", str(self.api_port), "--log-level", "warning"]
        self.api = self._spawn("api", argv, env)
        if wait:
            self.wait_api()
        return self.api

    def wait_api(self) -> None:
        assert self.api is not None
        self._wait(lambda: self.health() is not None, 30, "api /health", self.api)

    def wait_workers(self) -> None:
        for w in self.workers:
            self._wait(lambda w=w: self._heartbeat_seen(f"{w.name}@", w.pid), 30, "worker heartbeat", w)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=2).json()

    def client(self, caller: str = "alice") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {TOKENS[caller]}"})

    def ledger(self, since: float | None = None) -> dict:
        params = {"since": since} if since is not None else None
        r = httpx.get(self.url + "/internal/ledger", params=params, timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN}"})
        r.raise_for_status()
        return r.json()

    def ledger_task(self, task_id: str) -> dict:
        return next(t for t in self.ledger()["tasks"] if t["task_id"] == task_id)

    # -------------------------------------------------------------- helpers
    def submit(self, c: httpx.Client, file_id: int, priority: int = 5, **kw) -> dict:
        r = c.post("/api/data-sync/sync-single-file", json={"file_id": file_id, "priority": priority}, **kw)
        assert r.status_code == 202, r.text
        return r.json()

    def upload(self, c: httpx.Client, rows: int, name: str = "t.csv") -> int:
        body = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, rows + 1))
        r = c.post("/api/files", files={"file": (name, body.encode(), "text/csv")})
        assert r.status_code == 201, r.text
        return r.json()["file_id"]

    def wait_status(self, c: httpx.Client, task_id: str, statuses: set[str] | str = TERMINAL,
                    timeout: float = 20) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else statuses
        deadline, st = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                st = c.get(f"/api/data-sync/task-status/{task_id}").json()
                if st.get("status") in statuses:
                    return st
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} not in {statuses} after {timeout}s: {st}\n"
                             f"--- api log ---\n{self.api.tail() if self.api else ''}\n"
                             f"--- worker logs ---\n" + "\n".join(w.tail(20) for w in self.workers))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        e = dict(self.env)
        e.update(env or {})
        p = Proc(name, argv, e, self.tmp / f"{name}.log").start()
        self.procs.append(p)
        return p

    @staticmethod
    def _wait(pred, timeout: float, what: str, proc: Proc) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
            try:
                if pred():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{proc.tail()}")

    def teardown(self) -> None:
        for p in reversed(self.procs):
            p.kill()
        leftovers = {p.name: _group_alive(p.pid) for p in self.procs if p.popen is not None}
        leftovers = {k: v for k, v in leftovers.items() if v}
        assert not leftovers, f"processes left behind: {leftovers}"


def build_stack(tmp: Path, workers: int = 1, concurrency: int = 2, env: dict[str, str] | None = None,
                api: bool = True) -> Stack:
    st = Stack(tmp, env)
    try:
        st.start_redis()
        if api:  # start API and workers in parallel (imports dominate start-up), then wait for both
            st.start_api(wait=False)
        for _ in range(workers):
            st.start_worker(concurrency=concurrency, wait=False)
        if api:
            st.wait_api()
        st.wait_workers()
        if api and workers:  # the API's health snapshot refreshes every 0.25 s
            st._wait(lambda: st.health()["workers"] >= workers and st.health()["status"] == "ok", 10,
                     "health ok", st.api)
    except BaseException:
        st.teardown()
        raise
    return st


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Shared healthy stack (1 worker, concurrency 2) for the non-destructive tests of a module."""
    st = build_stack(tmp_path_factory.mktemp("stack"))
    yield st
    st.teardown()


@pytest.fixture
def make_stack(tmp_path) -> Iterator:
    """Factory for a private stack a test may break (kill workers, stop Redis...)."""
    made: list[Stack] = []

    def make(**kw) -> Stack:
        st = build_stack(tmp_path / f"s{len(made)}", **kw)
        made.append(st)
        return st

    (tmp_path / "s0").mkdir(exist_ok=True)
    for i in range(1, 4):
        (tmp_path / f"s{i}").mkdir(exist_ok=True)
    yield make
    for st in made:
        st.teardown()
