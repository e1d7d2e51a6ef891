"""The Celery client (``client = "celery"``) against examples/celery_only: real Redis, real workers, no API.

The slow half runs one cluster with one worker of concurrency 1, so a task submitted behind two long ones is
still queued when it is revoked. The fast half needs no processes: URLs, the app's isolation from the process
environment, and fault schedules without API faults.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings

from chaos.celery_client import CeleryWorkload, client_urls, close_app, make_app
from chaos.cluster.cluster import Cluster
from chaos.errors import ClusterError
from chaos.history import Recorder
from chaos.strategies import API_FAULTS, DEFAULT_FAULTS, fault_specs, schedules
from chaos.target import Target, load_target
from chaos.workload import TaskPlan, for_cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "celery_only" / "pyproject.toml"


@pytest.fixture(scope="module")
def target() -> Target:
    return load_target(EXAMPLE)


# --------------------------------------------------------------------------------------------------- fast


def test_urls_default_to_the_api_role_redis_url(target: Target) -> None:
    values = {"redis_url": "redis://127.0.0.1:1234/0", "redis_host": "127.0.0.1", "redis_port": 1234,
              "data_dir": "/tmp/x"}
    assert client_urls(target, values) == ("redis://127.0.0.1:1234/0", "redis://127.0.0.1:1234/0")
    bare = target.model_copy(update={"env": {}})
    assert client_urls(bare, values) == ("redis://127.0.0.1:1234/0", "redis://127.0.0.1:1234/0")
    other = target.with_env({"CELERY_RESULT_BACKEND": "redis://{redis_host}:{redis_port}/3"})
    assert client_urls(other, values) == ("redis://127.0.0.1:1234/0", "redis://127.0.0.1:1234/3")


def test_the_app_ignores_the_framework_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CELERY_BROKER_URL", "CELERY_BROKER_WRITE_URL", "CELERY_BROKER_READ_URL"):
        monkeypatch.setenv(var, "redis://somebody-else:6379/9")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://somebody-else:6379/9")
    monkeypatch.setenv("CELERY_CONFIG_MODULE", "no_such_module_of_the_target")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "no_such_settings")
    app = make_app("redis://127.0.0.1:1111/0", "redis://127.0.0.1:2222/0", socket_timeout=0.3)
    try:
        assert app.connection_for_write().as_uri().endswith("127.0.0.1:1111/0")
        assert app.connection_for_read().as_uri().endswith("127.0.0.1:1111/0")
        assert app.pool.connection.as_uri().endswith("127.0.0.1:1111/0")
        assert app.backend.connparams["port"] == 2222
        assert app.conf.broker_transport_options["socket_timeout"] == 0.3
    finally:
        close_app(app)


def test_a_timed_out_call_is_info(target: Target) -> None:
    """A server that accepts connections and never answers: a call past request_timeout is info, "timed out"."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)  # the kernel completes the handshakes; nobody ever reads
        url = f"redis://127.0.0.1:{mute.getsockname()[1]}/0"
        rec = Recorder()
        wl = CeleryWorkload(target, url, url, rec, request_timeout=0.2, socket_timeout=2.0)
        assert wl.one(wl.submit, 0, TaskPlan("short")) is None
        assert wl.one(wl.status, 1, "some-id") is None
    (submit, read) = [p for p in rec.history().pairs()]
    assert (submit.phase, submit.completion.error) == ("info", "timed out")
    assert (read.phase, read.value, read.completion.error) == ("info", {"unparseable": False}, "timed out")
    assert rec.history().problems() == []


def test_no_api_faults_are_drawn_without_an_api() -> None:
    assert set(API_FAULTS) == {"kill-api", "term-api", "restart-api"}

    @settings(max_examples=200, deadline=None)
    @given(schedules(max_faults=3, kinds=DEFAULT_FAULTS, api=False))
    def check(schedule: list) -> None:  # type: ignore[type-arg]
        assert not [f for f in schedule if f.kind in API_FAULTS or f.node == "api"]

    check()
    with pytest.raises(ValueError, match="no API"):
        fault_specs(kinds=("kill-api",), api=False)


# --------------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="module")
def cluster(target: Target) -> Iterator[Cluster]:
    one = target.model_copy(update={"worker_concurrency": 1})
    with Cluster(one, workers=1) as c:
        yield c


@pytest.mark.slow
def test_a_target_without_api_has_no_api_node(cluster: Cluster) -> None:
    assert cluster.api is None
    assert [n.name for n in cluster.nodes()] == ["redis", "proxy", "worker-0"]
    assert cluster.proxy is not None and set(cluster.proxy.proxies()) == {"workers_redis", "api_redis"}
    with pytest.raises(ClusterError, match="no HTTP API"):
        _ = cluster.api_url
    with pytest.raises(ClusterError, match="no HTTP API"):
        _ = cluster.proxied_api_url
    api_redis = cluster.proxy.get("api_redis")
    assert cluster.producer_values()["redis_port"] == api_redis.port  # the client's link: api_redis
    cluster.reset()  # heal and reset skip the missing API
    assert cluster.api is None and all(w.alive() for w in cluster.workers)


@pytest.mark.slow
def test_submit_read_fail_and_revoke_a_queued_task(cluster: Cluster) -> None:
    cluster.reset()
    rec = Recorder()
    wl = for_cluster(cluster, rec, request_timeout=5.0)
    assert isinstance(wl, CeleryWorkload)
    assert wl.broker_url == cluster.producer_values()["redis_url"]
    plans = [TaskPlan("short", at=0.0), TaskPlan("bad-input", at=0.05), TaskPlan("long", at=0.1),
             TaskPlan("long", at=0.15), TaskPlan("long", at=0.3, cancel_after=0.0)]
    wl.quiesce_deadline = time.monotonic() + 20
    wl.run_sync(plans, unknown_probes=1)
    history = rec.history()
    assert history.problems() == []

    submits = [p for p in history.pairs("submit")]
    assert all(p.phase == "ok" for p in submits), [p.to_dict() for p in submits]
    ids = {p.invoke.value["kind"] + str(i): p.task_id for i, p in enumerate(sorted(submits, key=lambda p: p.invoke.time))}
    assert all(p.value == {"task_id": p.task_id, "status": None, "mode": None} for p in submits)
    final = {tid: wl.last_status[tid] for tid in ids.values()}
    assert final[ids["short0"]] == "SUCCESS"
    assert final[ids["bad-input1"]] == "FAILURE"
    assert final[ids["long2"]] == final[ids["long3"]] == "SUCCESS"
    assert final[ids["long4"]] == "REVOKED"  # queued behind two long tasks when it was revoked

    (cancel,) = history.pairs("cancel")
    assert (cancel.phase, cancel.task_id, cancel.value) == ("ok", ids["long4"], {"status": None})
    failed = [p for p in history.pairs("drain") if p.task_id == ids["bad-input1"]]
    assert failed and "ValueError" in failed[0].value["error"]
    (probe,) = [p for p in history.pairs("status") if (p.invoke.value or {}).get("probe")]
    assert (probe.phase, probe.status) == ("ok", "PENDING")  # Celery's default for an id nobody submitted
    # a revoked task stays revoked: no read after REVOKED says otherwise
    seen = [p.status for p in history.pairs() if p.task_id == ids["long4"] and p.f in ("status", "drain")
            and p.phase == "ok"]
    assert "REVOKED" in seen and seen[seen.index("REVOKED"):] == ["REVOKED"] * len(seen[seen.index("REVOKED"):])


@pytest.mark.slow
def test_the_client_goes_through_the_api_redis_link(cluster: Cluster) -> None:
    cluster.reset()
    assert cluster.proxy is not None
    rec = Recorder()
    wl = for_cluster(cluster, rec, request_timeout=3.0)
    cluster.proxy.disable("api_redis")
    try:
        t0 = time.monotonic()
        assert wl.one(wl.submit, 0, TaskPlan("short")) is None
        assert time.monotonic() - t0 < 2.0  # refused at once: the broker outage bound holds
    finally:
        cluster.heal()
    task_id = wl.one(wl.submit, 1, TaskPlan("short"))  # after the heal a new connection works again
    assert task_id is not None
    wl.drain_sync(time.monotonic() + 10)
    assert wl.last_status[task_id] == "SUCCESS"
    submits = rec.history().pairs("submit")
    assert [p.phase for p in submits] == ["info", "ok"]
    assert rec.history().problems() == []
