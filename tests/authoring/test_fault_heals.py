"""Every fault's ``inject`` returns its own heal, and that heal undoes what the inject did (on fake nodes)."""

from __future__ import annotations

import pytest

from chaos.nemesis import FAULTS, FaultSpec
from tests.authoring.fakes import FakeCluster

NODE = {"worker": "worker-0", "redis": "redis", "api": "api", "link": "workers_redis"}
NEEDS_REAL = {"flushall", "client-kill", "memory-pressure", "kill-child", "scale-down"}  # real Redis, a pool, scale


@pytest.fixture
def cluster():
    c = FakeCluster()
    yield c
    c.close()


@pytest.mark.parametrize("kind", sorted(set(FAULTS) - NEEDS_REAL))
def test_the_heal_undoes_the_inject(kind, cluster):
    fault = FAULTS[kind]
    spec = FaultSpec(kind, NODE[fault.targets])
    heal = fault.inject(cluster, spec)
    assert callable(heal)
    heal()
    for node in cluster.nodes():
        assert node.alive() and not node.paused, (kind, node.name, node.done)
    assert cluster.proxy.toxics == [], kind


def test_a_signalled_worker_is_started_again_and_a_paused_one_resumed(cluster):
    w = cluster.node("worker-0")
    FAULTS["kill-worker"].inject(cluster, FaultSpec("kill-worker", "worker-0"))()
    FAULTS["pause-worker"].inject(cluster, FaultSpec("pause-worker", "worker-0"))()
    assert w.done == ["kill:9", "start", "pause", "resume"]


def test_a_toxic_heal_removes_only_its_own_toxics(cluster):
    cluster.proxy.add_toxic("workers_redis", "latency", name="somebody_elses")
    heal = FAULTS["cut"].inject(cluster, FaultSpec("cut", "workers_redis", params={"stream": "upstream"}))
    assert ("workers_redis", "chaos_timeout_upstream") in cluster.proxy.toxics
    heal()
    assert cluster.proxy.toxics == [("workers_redis", "somebody_elses")]
