"""The ``docker`` backend against the reference target: a real stack of containers, faults applied, cleanup proven.

Needs a Docker daemon and the target image (built on first use, or by ``chaos images build``);
skipped with a reason where no daemon answers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_lib

pytestmark = [pytest.mark.docker, pytest.mark.slow]

docker = pytest.importorskip("docker")
pytest.importorskip("testcontainers")

from chaos.checkers.worker_crash import fatal_lines  # noqa: E402
from chaos.cluster.base import Persistence  # noqa: E402
from chaos.cluster.cleanup import LABEL_RUN  # noqa: E402
from chaos.target import load_target  # noqa: E402

TOKEN = {"Authorization": "Bearer chaos-token"}
SUBMIT = "/api/data-sync/sync-single-file"
STATUS = "/api/data-sync/task-status/{}"


def _daemon() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=10)
        c.ping()
        return c
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker daemon answers ({type(exc).__name__})")


def _ours(run_id: str) -> tuple[list, list]:
    c = _daemon()
    try:
        flt = {"label": f"{LABEL_RUN}={run_id}"}
        return c.containers.list(all=True, filters=flt), c.networks.list(filters=flt)
    finally:
        c.close()


def make_cluster(**kw):
    from chaos.cluster.cluster import Cluster

    _daemon().close()
    return Cluster(load_target(), backend="docker", **kw)


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    c = make_cluster(workers=1)
    with c:
        yield c
    containers, networks = _ours(c.run_id)
    assert containers == [] and networks == [], "the cluster left containers or networks behind"


def wait_service_ok(c, timeout: float = 60.0) -> dict:
    """The reference service's own view: Redis up, a live worker, publishing to Celery (not its fallback)."""
    deadline = time.monotonic() + timeout
    h: dict = {}
    while time.monotonic() < deadline:
        try:
            h = httpx.get(c.api_url + c.target.http.probe_path, timeout=2).json()
            if h.get("status") == "ok":
                return h
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service did not report ok within {timeout}s: {h}")


@pytest.fixture
def healthy(cluster) -> Iterator:
    """The module's cluster as each test needs it: every worker running, the service reporting ok. A worker an
    earlier test left dead, or alive after Celery gave up (its log says "Unrecoverable error"), is started
    again, so one test's failure does not fail the tests after it."""
    for w in cluster.workers:
        if not w.alive():
            w.start()
        elif fatal_lines(w.logs_since_start()):
            w.restart(graceful=False)
    wait_service_ok(cluster)
    yield cluster
    cluster.heal()


def submit(api_url: str, file_id: int = 1, mode: str | None = None) -> str:
    r = httpx.post(api_url + SUBMIT, json={"file_id": file_id}, headers=TOKEN, timeout=10)
    assert r.status_code in (200, 201, 202), r.text
    if mode is not None:
        assert r.json().get("mode") == mode, r.json()
    return r.json()["celery_task_id"]


def status(api_url: str, task_id: str) -> str:
    r = httpx.get(api_url + STATUS.format(task_id), headers=TOKEN, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["status"]


def wait_status(api_url: str, task_id: str, want: str = "SUCCESS", timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    s = "?"
    while time.monotonic() < deadline:
        s = status(api_url, task_id)
        if s == want or s in ("FAILURE", "REVOKED"):
            break
        time.sleep(0.1)
    return s


def test_task_succeeds_through_the_api(healthy) -> None:
    c = healthy
    assert c.bring_up_seconds is not None
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid) == "SUCCESS"
    # the same through the client_api proxy link, published on loopback
    tid = submit(c.proxied_api_url)
    assert wait_status(c.proxied_api_url, tid) == "SUCCESS"


def test_nodes_are_labelled_named_and_published_on_loopback_only(healthy) -> None:
    c = healthy
    containers, networks = _ours(c.run_id)
    assert len(networks) == 1 and networks[0].name == c.run_id
    names = sorted(x.name for x in containers)
    assert names == sorted(f"{c.run_id}-{n}" for n in ("redis", "proxy", "api", "worker-0"))
    for x in containers:
        for binds in (x.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in binds or ():
                assert b["HostIp"] == "127.0.0.1", (x.name, binds)


def test_sigkill_worker_then_restart(healthy) -> None:
    c = healthy
    w = c.workers[0]
    before = w.pids()
    assert len(before) >= 3 and len(w.child_pids()) == c.target.worker_concurrency
    w.kill(signal.SIGKILL)
    assert w.wait_exit(5) and not w.alive() and w.pids() == []
    w.start()
    assert w.alive() and set(w.pids()).isdisjoint(before)
    assert len(w.logs().split("ready.")) >= 3, "logs must span both runs"
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid) == "SUCCESS"


def test_sigterm_reaches_celery_through_docker_init(healthy) -> None:
    c = healthy
    w = c.workers[0]
    w.kill(signal.SIGTERM)
    assert w.wait_exit(20), "SIGTERM to PID 1 (docker-init) must reach Celery's main process"
    assert w.container.attrs["State"]["ExitCode"] == 0, "a warm shutdown exits 0"
    w.start()


def test_kill_pool_child(healthy) -> None:
    c = healthy
    w = c.workers[0]
    children = w.child_pids()
    victim = w.kill_child(signal.SIGKILL)
    assert victim in children
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = w.child_pids()
        if victim not in now and len(now) == len(children):
            break
        time.sleep(0.1)
    assert victim not in w.child_pids() and len(w.child_pids()) == len(children), "billiard replaces the child"
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid) == "SUCCESS"


def test_pause_and_resume_redis(healthy) -> None:
    c = healthy
    c.redis.pause()
    try:
        assert c.redis.alive() and c.redis.paused
        r = c.redis.client(timeout=0.5)
        with pytest.raises(redis_lib.RedisError):
            r.ping()
        r.close()
    finally:
        c.redis.resume()
    r = c.redis.client()
    assert r.ping()
    r.close()
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid) == "SUCCESS"


def test_redis_restart_keeps_data_with_aof(healthy) -> None:
    c = healthy
    assert c.redis.persistence.aof
    r = c.redis.client()
    r.set("chaos:survives", "yes")
    r.close()
    c.redis.kill(signal.SIGKILL)  # appendfsync always: acknowledged writes are on disk
    assert not c.redis.alive()
    c.redis.start()
    r = c.redis.client()  # endpoint re-read: the host port may have changed
    assert r.get("chaos:survives") == b"yes"
    r.delete("chaos:survives")
    r.close()
    c.workers[0].wait_ready()
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid, timeout=60) == "SUCCESS"


def test_cut_and_heal_the_workers_link(healthy) -> None:
    c = healthy
    c.proxy.cut("workers_redis")
    try:
        tid = submit(c.api_url, mode="celery")  # the API's link (api_redis) is intact: the publish succeeds
        time.sleep(2.0)
        view = httpx.get(c.api_url + STATUS.format(tid), headers=TOKEN, timeout=10).json()
        assert view["status"] != "SUCCESS", f"a worker cut off from Redis cannot run the task: {view}"
    finally:
        c.proxy.heal("workers_redis")
    got = wait_status(c.api_url, tid, timeout=60)
    w = c.workers[0]
    gave_up = fatal_lines(w.logs_since_start())
    why = f"Celery gave up in the worker ({gave_up[-1]})" if gave_up else f"worker {'alive' if w.alive() else 'exited'}"
    assert got == "SUCCESS", f"{got} 60s after heal: {why}; its log tail:\n{w.log_tail(40)}"


def test_api_restart_rereads_its_endpoint(healthy) -> None:
    c = healthy
    old = c.api.endpoint
    c.api.restart()
    new = c.api.endpoint
    assert new.host == "127.0.0.1"
    assert httpx.get(new.url + c.target.http.probe_path, timeout=5).status_code == 200
    assert c.api_url == new.url
    tid = submit(c.api_url)
    assert wait_status(c.api_url, tid) == "SUCCESS"
    if new.port != old.port:  # the usual case with random host ports
        with pytest.raises(httpx.HTTPError):
            httpx.get(old.url + c.target.http.probe_path, timeout=2)


def test_redis_without_persistence_is_empty_after_restart_and_close_cleans_up() -> None:
    c = make_cluster(workers=0, persistence=Persistence(aof=False))
    with c:
        r = c.redis.client()
        r.set("chaos:gone", "1")
        r.close()
        c.redis.stop(graceful=True, timeout=5)
        assert not c.redis.alive()
        c.redis.start()
        r = c.redis.client()
        assert r.get("chaos:gone") is None and r.dbsize() == 0
        r.close()
        assert _ours(c.run_id)[0], "containers exist while the cluster runs"
    containers, networks = _ours(c.run_id)
    assert containers == [] and networks == []
