"""One contract for every backend: bring the stack up, use it, hurt each node, see the expected effect.

Parametrised over ``local`` and ``docker``; the docker half skips with a reason where no daemon answers.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import redis as redis_lib

from chaos.cluster.base import Persistence
from chaos.cluster.cleanup import our_processes, remove_containers
from chaos.cluster.cluster import Cluster
from chaos.target import load_target
from chaos.waiting import wait_until

pytestmark = pytest.mark.slow

BACKENDS = [pytest.param("local", id="local"), pytest.param("docker", id="docker", marks=pytest.mark.docker)]
AUTH = {"Authorization": "Bearer chaos-token"}


def submit(c: Cluster, file_id: int = 1) -> str:
    r = httpx.post(c.api_url + "/api/data-sync/sync-single-file", json={"file_id": file_id}, headers=AUTH,
                   timeout=10)
    assert r.status_code == 202, r.text
    return r.json()["celery_task_id"]


def wait_status(c: Cluster, task_id: str, want: set[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        r = httpx.get(c.api_url + f"/api/data-sync/task-status/{task_id}", headers=AUTH, timeout=5)
        status = r.json().get("status")
        if status in want:
            return status
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} is {status}, not one of {want} after {timeout}s")


def wait_for(pred, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    wait_until(pred, timeout, 0.1, what=what, error=AssertionError)


def redis_ping(c: Cluster) -> bool:
    try:
        client = c.redis.client(timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis_lib.RedisError:
        return False


@pytest.fixture(params=BACKENDS)
def cluster(request):  # noqa: ANN001, ANN201
    c = Cluster(load_target(), backend=request.param, workers=1)
    with c:
        yield c
    assert not our_processes(c.run_id), "processes of the cluster survived its close"
    assert remove_containers(c.run_id) == 0, "containers of the cluster survived its close"


def test_up_submit_and_finish(cluster):
    assert cluster.bring_up_seconds is not None
    assert wait_status(cluster, submit(cluster), {"SUCCESS"}) == "SUCCESS"
    names = {n.name for n in cluster.nodes()}
    assert {"redis", "proxy", "api", "worker-0"} <= names
    assert all(n.alive() and n.pids() for n in cluster.nodes())


def test_worker_sigkill_then_restart(cluster):
    w = cluster.workers[0]
    pids = set(w.pids())
    w.kill(signal.SIGKILL)
    assert w.wait_exit(10)
    assert not any(p in pids for p in w.pids())
    w.start()
    assert wait_status(cluster, submit(cluster), {"SUCCESS"}) == "SUCCESS"


def test_pool_child_sigkill_is_replaced(cluster):
    w = cluster.workers[0]
    before = set(w.child_pids())
    assert before, "a prefork worker has pool children"
    victim = w.kill_child(signal.SIGKILL)
    assert victim in before
    wait_for(lambda: victim not in w.child_pids() and len(w.child_pids()) == len(before), what="a new child")
    assert w.alive()


def test_pause_and_resume_redis(cluster):
    cluster.redis.pause()
    assert cluster.redis.alive() and not redis_ping(cluster)
    cluster.redis.resume()
    wait_for(lambda: redis_ping(cluster), what="redis to answer again")


@pytest.mark.parametrize("aof", [True, False], ids=["persistent", "volatile"])
def test_stop_start_redis_persistence(cluster, aof):
    if cluster.redis.persistence.aof != aof:
        cluster.redis.persistence = Persistence(aof=aof)
        cluster.redis.restart()
        if not aof:
            r = cluster.redis.client()
            r.config_set("appendonly", "no")
            r.close()
    r = cluster.redis.client()
    r.set("chaos:canary-key", "1")
    r.close()
    cluster.redis.stop(graceful=True)
    assert not cluster.redis.alive()
    cluster.redis.start()
    r = cluster.redis.client()
    try:
        assert (r.get("chaos:canary-key") is not None) is aof
    finally:
        r.close()


def test_cut_and_heal_a_link(cluster):
    link = cluster.proxy.get("workers_redis")
    # where the test process reaches that listener (a published port on the docker backend)
    host, port = cluster.backend.link_address(cluster.proxy_node, link.listen, from_host=True)
    client = redis_lib.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=None)
    assert client.ping()
    cluster.proxy.cut("workers_redis")
    with pytest.raises(redis_lib.RedisError):
        client.ping()
    cluster.proxy.heal("workers_redis")
    client.close()
    client = redis_lib.Redis(host=host, port=port, socket_timeout=1, retry=None)
    assert client.ping()
    client.close()


def test_cut_workers_link_holds_tasks_until_healed(cluster):
    cluster.proxy.cut("workers_redis")
    tid = submit(cluster)
    time.sleep(1.5)
    r = httpx.get(cluster.api_url + f"/api/data-sync/task-status/{tid}", headers=AUTH, timeout=5)
    assert r.json()["status"] == "PENDING"
    cluster.proxy.heal("workers_redis")
    assert wait_status(cluster, tid, {"SUCCESS"}, timeout=60) == "SUCCESS"


def test_restart_api_rereads_endpoint(cluster):
    cluster.api.restart()
    r = httpx.get(cluster.api_url + "/health", timeout=5)
    assert r.status_code == 200
    assert wait_status(cluster, submit(cluster), {"SUCCESS"}) == "SUCCESS"


def test_scale_workers_at_runtime(cluster):
    cluster.scale(2)
    assert len(cluster.workers) == 2 and all(w.alive() for w in cluster.workers)
    removed = cluster.remove_worker()
    assert not removed.alive() and len(cluster.workers) == 1
