"""Real-process fixtures for the data-sync service: Redis (AOF), Celery worker(s), uvicorn API.

The processes are the framework's own local nodes (``chaos.cluster.local``) made by its local backend from the
reference target's description (``load_target`` on the repository's pyproject), with the tests' env laid over
the target's. So they carry the framework's cleanup marks and registry entries: a crashed or killed test run
leaves nothing the next run's sweep (``chaos.cluster.cleanup.remove_leftovers``) cannot find. Unlike a
``Cluster`` there is no fault proxy: the tests break Redis, the API and the workers directly. Teardown SIGKILLs
every node's process group and checks that nothing of the stack's run survived. Readiness is real: Redis PING
(on our own redis-server), API /health, and worker heartbeats counted by /health.
"""
from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from chaos import probe
from chaos.cluster.base import Node, Persistence
from chaos.cluster.cleanup import forget_run, kill_processes, our_processes
from chaos.cluster.local import LocalApi, LocalBackend, LocalRedis, LocalWorker
from chaos.target import Target, load_target

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret"
# The reference target's own tokens ([tool.celery-chaos.target.env] API_TOKENS in pyproject.toml; the chaos
# workload uses "chaos-token"), next to two test callers.
TARGET_TOKENS = {"chaos": "chaos-token", "other": "other-token"}
TOKENS = {"alice": "tok-alice", "bob": "tok-bob", **TARGET_TOKENS}
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}
# Faster than the target's own settings, so the fault tests take seconds.
TEST_ENV = {
    "API_TOKENS": ",".join(f"{t}={c}" for c, t in TOKENS.items()),
    "ADMIN_TOKEN": ADMIN,
    "LEASE_SECONDS": "2",
    "ROW_WORK_MS": "10",
    "SWEEP_INTERVAL_SECONDS": "0.5",
    "PUBLISH_TIMEOUT_MS": "100",
}


def reference_target() -> Target:
    return load_target(ROOT / "pyproject.toml")


class Stack:
    """Redis + N workers + API(s) sharing one SQLite file, all under ``tmp``, as one run of marked processes."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.run_id = f"cc-{uuid.uuid4().hex[:10]}"
        self.target = reference_target().with_env({**TEST_ENV, **(env or {})})
        self.backend = LocalBackend(self.target, tmp, self.run_id)
        self.redis: LocalRedis = self.backend.make_redis(Persistence(aof=True, fsync="everysec"))
        self.db = Path(self.backend.data_dir()) / "data-sync.db"
        self.nodes: list[Node] = [self.redis]
        self.workers: list[LocalWorker] = []
        self.api: LocalApi | None = None
        self._n = 0

    @property
    def values(self) -> dict[str, Any]:
        """The target's template values: straight at our Redis (no fault proxy), the stack's data dir."""
        return {"redis_url": self.redis.url, "redis_host": "127.0.0.1", "redis_port": self.redis.port,
                "data_dir": self.backend.data_dir()}

    @property
    def env(self) -> dict[str, str]:
        """What a process of the stack sees (a one-off ``python -m service.seed`` too)."""
        rendered = self.target.render_env(**self.values, python=self.target.interpreter, host="127.0.0.1", port=0,
                                          name="api", concurrency=self.target.worker_concurrency)
        return {**os.environ, **rendered, "PYTHONUNBUFFERED": "1"}

    # ---------------------------------------------------------------- redis
    def start_redis(self) -> LocalRedis:
        """Start (or start again: same port, same AOF dir) our redis-server; ready once it answers PING."""
        self.redis.start()
        return self.redis

    def stop_redis(self) -> None:
        self.redis.kill()

    # -------------------------------------------------------------- workers
    def start_worker(self, concurrency: int = 2, wait: bool = True) -> LocalWorker:
        self._n += 1
        with mock.patch.dict(os.environ, {probe.DISABLE_ENV: "off"}):  # the service alone, no framework probe
            w = self.backend.make_worker(f"worker-{self._n}", {**self.values, "concurrency": concurrency})
        self.nodes.append(w)
        self.workers.append(w)
        w.spawn()
        if wait:
            self._wait(lambda: self._heartbeat_seen(f"{w.name}@", self._pid(w)), 30, "worker heartbeat", w)
        return w

    @staticmethod
    def _pid(node: Node) -> int:
        assert isinstance(node, (LocalApi, LocalRedis, LocalWorker)) and node.proc is not None
        return node.proc.pid

    def _heartbeat_seen(self, prefix: str, pid: int) -> bool:
        """The worker's own row in the ``workers`` table is fresh (read-only peek at the SQLite file)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=2)
        try:
            row = con.execute("SELECT last_seen FROM workers WHERE hostname LIKE ? AND pid = ?",
                              (prefix + "%", pid)).fetchone()
        finally:
            con.close()
        return row is not None and time.time() - row[0] < 2

    # ------------------------------------------------------------------ api
    def start_api(self, wait: bool = True) -> LocalApi:
        """Start the API (again after a kill: the same port)."""
        if self.api is None:
            self.api = self.backend.make_api(dict(self.values))
            self.nodes.append(self.api)
        self.api.spawn()
        if wait:
            self.wait_api()
        return self.api

    def extra_api(self, name: str, env: dict[str, str]) -> LocalApi:
        """One more API on the same Redis and database with ``env`` over the stack's, on a port of its own,
        started and ready; the stack's teardown stops it."""
        backend = LocalBackend(self.target.with_env(env), self.tmp / name, self.run_id)
        api = backend.make_api(dict(self.values))
        self.nodes.append(api)
        api.spawn()
        self._wait(lambda: httpx.get(f"{api.endpoint.url}/health").status_code == 200, 30, "api /health", api)
        return api

    def wait_api(self) -> None:
        assert self.api is not None
        self._wait(lambda: self.health() is not None, 30, "api /health", self.api)

    def wait_workers(self) -> None:
        for w in self.workers:
            self._wait(lambda w=w: self._heartbeat_seen(f"{w.name}@", self._pid(w)), 30, "worker heartbeat", w)

    @property
    def api_port(self) -> int:
        assert self.api is not None
        return self.api.port

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
                             f"--- api log ---\n{self.api.log_tail(40) if self.api else ''}\n"
                             f"--- worker logs ---\n" + "\n".join(w.log_tail(20) for w in self.workers))

    @staticmethod
    def _wait(pred: Callable[[], Any], timeout: float, what: str, node: Node) -> None:
        """Poll ``pred``; a node that exits meanwhile fails at once with its log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive():
                raise AssertionError(f"{node.name} exited while waiting for {what}:\n{node.log_tail(40)}")
            try:
                if pred():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{node.log_tail(40)}")

    def teardown(self) -> None:
        """SIGKILL every node's process group, then check by the run's marks that nothing of it survived."""
        for n in reversed(self.nodes):
            n.kill()
        leftovers = [f"{p.pid} {p.name()}" for p in our_processes(self.run_id) if _running(p)]
        kill_processes(our_processes(self.run_id))
        forget_run(self.run_id)
        assert not leftovers, f"processes left behind: {leftovers}"


def _running(proc: Any) -> bool:
    try:
        return proc.status() != "zombie"
    except Exception:  # noqa: BLE001 - gone
        return False


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
