"""Never touch what is not ours: a stranger on one of our ports is never adopted nor sent a fault, and a sweep
leaves another host's processes, containers and networks alone.

Real processes throughout: the strangers are real redis-servers and a real fault proxy this test starts (without
our marks), and each test kills exactly what it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import redis as redis_lib

from chaos.cluster import local
from chaos.cluster.base import Persistence
from chaos.cluster.cleanup import (
    HOST_VAR,
    LABEL_HOST,
    LABEL_OWNER,
    LABEL_RUN,
    OWNER_VAR,
    RUN_VAR,
    host_id,
    remove_containers,
    remove_leftovers,
)
from chaos.cluster.ownership import ForeignEndpoint, listens_on
from chaos.errors import ClusterError
from chaos.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (bash scripts/setup.sh)")
ANOTHER_HOST = "another-host/0123456789abcdef/pid:[4026531836]"


@pytest.fixture(autouse=True)
def _own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_CHAOS_STATE", str(tmp_path / "state"))  # our pid files stay out of the real registry


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def wait_for(predicate, timeout: float = 10.0) -> None:
    wait_until(predicate, timeout, what=str(predicate), ignore=Exception, error=AssertionError)


@contextmanager
def stranger_redis(tmp_path: Path, port: int | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    """Somebody else's redis-server (no mark of ours) holding one key that must survive."""
    port = port or local.free_port()
    d = tmp_path / f"stranger-{port}"
    d.mkdir()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        c = redis_lib.Redis(port=port, socket_timeout=2)
        wait_for(c.ping)
        c.set("precious", "theirs")
        c.close()
        yield proc, port
    finally:
        stop(proc)


def assert_untouched(proc: subprocess.Popen, port: int) -> None:
    assert proc.poll() is None, "the stranger's redis-server was stopped"
    c = redis_lib.Redis(port=port, socket_timeout=2)
    try:
        assert c.get("precious") == b"theirs" and c.dbsize() == 1, "the stranger's data was touched"
        assert c.config_get("maxmemory") == {"maxmemory": "0"}, "the stranger's config was touched"
        assert int(c.info("server")["process_id"]) == proc.pid
    finally:
        c.close()


def patch_free_port(monkeypatch: pytest.MonkeyPatch, first: int) -> None:
    """``free_port`` as a lost race sees it: the first pick is taken by the time we bind it, later picks are free."""
    real = local.free_port
    picks = iter([first])
    monkeypatch.setattr(local, "free_port", lambda host="127.0.0.1": next(picks, None) or real(host))


def make_redis(tmp_path: Path) -> local.LocalRedis:
    return local.LocalRedis(Persistence(aof=False), tmp_path / "redis", tmp_path / "logs", f"cc-{uuid.uuid4().hex[:10]}")


# --- local redis ---------------------------------------------------------------------------------------------
@needs_redis
def test_a_stranger_on_the_first_port_is_not_adopted_the_node_moves(tmp_path, monkeypatch):
    with stranger_redis(tmp_path) as (stranger, taken):
        patch_free_port(monkeypatch, taken)
        node = make_redis(tmp_path)
        assert node.port == taken
        try:
            node.start()
            assert node.port != taken, "readiness counted a stranger's PONG"
            c = node.client()
            try:
                assert int(c.info("server")["process_id"]) == node.proc.pid
                c.flushall()  # ours: allowed
            finally:
                c.close()
        finally:
            node.stop(graceful=False)
        assert_untouched(stranger, taken)


@needs_redis
def test_a_stranger_taking_the_port_while_ours_is_down_gets_no_fault(tmp_path):
    node = make_redis(tmp_path)
    try:
        node.start()
        port = node.port
        node.kill()  # a redis-down fault; meanwhile somebody else binds the port
        with stranger_redis(tmp_path, port) as (stranger, _):
            for fault in (lambda c: c.flushall(), lambda c: c.config_set("maxmemory", 1),
                          lambda c: c.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"),
                          lambda c: c.delete("precious")):
                c = node.client()
                try:
                    with pytest.raises(ForeignEndpoint, match="not our redis-server"):
                        fault(c)
                finally:
                    c.close()
            with pytest.raises(ClusterError, match=f"127.0.0.1:{port} is another process's"):
                node.start()  # the heal's restart: wired to this port, so it refuses rather than moves
            assert node.port == port
            assert_untouched(stranger, port)
    finally:
        node.stop(graceful=False)
    assert not node.alive()


@needs_redis
def test_the_nemesis_faults_never_reach_a_stranger(tmp_path, monkeypatch):
    """The catalogue's own broker faults, on a node whose port a stranger holds (the node never started)."""
    from types import SimpleNamespace

    from chaos.nemesis import FAULTS, FaultSpec

    with stranger_redis(tmp_path) as (stranger, taken):
        patch_free_port(monkeypatch, taken)
        node = make_redis(tmp_path)
        cluster = SimpleNamespace(redis=node)
        for kind in ("flushall", "client-kill", "memory-pressure"):
            with pytest.raises(ForeignEndpoint):
                FAULTS[kind].inject(cluster, FaultSpec(kind, "redis"))  # type: ignore[arg-type]
        assert_untouched(stranger, taken)


# --- local proxy ---------------------------------------------------------------------------------------------
def test_a_stranger_on_the_proxy_port_is_not_adopted(tmp_path, monkeypatch):
    taken = local.free_port()
    stranger = subprocess.Popen([sys.executable, "-m", "chaos.proxy", "--listen", f"127.0.0.1:{taken}"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{taken}/version", timeout=0.5).status_code == 200, 20)
        patch_free_port(monkeypatch, taken)
        node = local.LocalProxy(tmp_path / "logs", f"cc-{uuid.uuid4().hex[:10]}", ROOT)
        try:
            node.start()
            assert node.port != taken and listens_on(node.pids(), node.port)
            assert not listens_on(node.pids(), taken)
        finally:
            node.stop(graceful=False)
        assert stranger.poll() is None
        assert httpx.get(f"http://127.0.0.1:{taken}/version", timeout=2).status_code == 200
    finally:
        stop(stranger)


# --- the sweep: processes ------------------------------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    assert not psutil.pid_exists(p.pid)
    return p.pid


def test_the_sweep_kills_this_hosts_orphans_only():
    marks = {RUN_VAR: f"cc-{uuid.uuid4().hex[:10]}", OWNER_VAR: str(dead_pid())}
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    envs = {"this host": {HOST_VAR: host_id()}, "another host": {HOST_VAR: ANOTHER_HOST}, "no host mark": {}}
    procs = {k: subprocess.Popen(sleeper, env={**os.environ, **marks, **extra}, start_new_session=True)
             for k, extra in envs.items()}
    try:
        for p in procs.values():  # the marks are readable once the child has exec'd
            wait_for(lambda p=p: psutil.Process(p.pid).environ().get(RUN_VAR) == marks[RUN_VAR])
        remove_leftovers()
        assert procs["this host"].wait(10) is not None, "this host's orphan survived the sweep"
        assert procs["another host"].poll() is None, "another host's process was killed (its owner may live there)"
        assert procs["no host mark"].poll() is None, "an unlabelled process (an older version's) was killed"
    finally:
        for p in procs.values():
            stop(p)


# --- the sweep: containers and networks on a shared daemon ---------------------------------------------------
def _daemon():
    docker = pytest.importorskip("docker")
    try:
        c = docker.from_env(timeout=30)
        c.ping()
        return c
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker daemon answers ({type(exc).__name__})")


def _local_image(client) -> str:
    """An image the project built (nothing can be pulled): a base first, it outlives target-image pruning."""
    from chaos.images import LABEL_IMAGE

    found = sorted(client.images.list(filters={"label": LABEL_IMAGE}),
                   key=lambda im: im.labels.get(LABEL_IMAGE) != "base")
    for im in found:
        if im.tags:
            return im.tags[0]
    pytest.skip("no celery-chaos image on this daemon (chaos images build)")


@pytest.mark.docker
def test_the_sweep_leaves_another_hosts_containers_and_networks():
    client = _daemon()
    image = _local_image(client)
    run = f"cc-{uuid.uuid4().hex[:10]}"
    owner = dead_pid()
    made: dict[str, object] = {}
    nets: dict[str, object] = {}
    try:
        for name, host in (("this", host_id()), ("another", ANOTHER_HOST), ("unlabelled", None)):
            lbls = {LABEL_RUN: f"{run}-{name}", LABEL_OWNER: str(owner)}
            if host is not None:
                lbls[LABEL_HOST] = host
            made[name] = client.containers.create(image, ["sleep", "300"], name=f"{run}-{name}", labels=lbls)
            nets[name] = client.networks.create(f"{run}-{name}", labels=lbls)
        remove_containers(orphans_only=True)  # what a session start does on a daemon another host shares
        left = {c.name for c in client.containers.list(all=True, filters={"label": LABEL_RUN})}
        left_nets = {n.name for n in client.networks.list(filters={"label": LABEL_RUN})}
        assert f"{run}-this" not in left and f"{run}-this" not in left_nets, "this host's orphans were not swept"
        assert f"{run}-another" in left and f"{run}-another" in left_nets, "another host's live run was removed"
        assert f"{run}-unlabelled" in left and f"{run}-unlabelled" in left_nets, "an unlabelled one was removed"
    finally:
        for c in made.values():
            try:
                c.remove(force=True)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - already swept
                pass
        for n in nets.values():
            try:
                n.remove()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass
        client.close()


@pytest.mark.docker
def test_a_docker_redis_client_refuses_a_port_its_container_does_not_publish(tmp_path, monkeypatch):
    """A stale endpoint (a port our container published once, somebody else's now) gets no fault."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (bash scripts/setup.sh)")
    pytest.importorskip("testcontainers")
    client = _daemon()
    image = _local_image(client)  # every image of ours has redis-server
    client.close()
    from chaos.cluster.docker import IMAGE_ENV, REDIS_PORT, DockerBackend

    monkeypatch.setenv(IMAGE_ENV, image)
    run = f"cc-{uuid.uuid4().hex[:10]}"
    backend = DockerBackend(None, tmp_path, run)  # type: ignore[arg-type]  # no target: the image is given
    try:
        node = backend.make_redis(Persistence(aof=False))
        node.start()  # readiness goes through the check: our own container passes it
        c = node.client()
        try:
            c.flushall()
        finally:
            c.close()
        with stranger_redis(tmp_path) as (stranger, taken):
            node._ports[REDIS_PORT] = taken  # the cached port went stale and a stranger holds it now
            c = node.client()
            try:
                with pytest.raises(ForeignEndpoint, match="not published by our container"):
                    c.flushall()
            finally:
                c.close()
            assert_untouched(stranger, taken)
    finally:
        backend.close()
        remove_containers(run)
