"""The broker inspector says where each unfinished task is: queued (with its position), held by a live worker,
running, unacked, finished, or gone, from Redis and the worker probe (real Redis, real workers)."""

from __future__ import annotations

import pytest
from celery import Celery

from chaos.cluster.cluster import Cluster
from chaos.inspector import locate
from chaos.target import load_target
from chaos.waiting import wait_until

from .test_probe_verdicts import SHORT_VISIBILITY, app_dir

pytestmark = [pytest.mark.slow]


def _client(cluster: Cluster) -> Celery:
    assert cluster.redis is not None
    return Celery("t", broker=cluster.redis.url, backend=cluster.redis.url)


def _until(pred, timeout=15.0):
    return bool(wait_until(pred, timeout, 0.1, error=None))


def test_queued_held_running_then_gone_or_unacked_with_acks_early(tmp_path):
    target = load_target(app_dir(tmp_path, concurrency=1))  # Celery's defaults: acks early, prefetch 4
    with Cluster(target, backend="local", workers=0) as cluster:
        app = _client(cluster)
        ids = [app.send_task("slow", args=[3]).id for _ in range(7)]
        where = locate(cluster, ids)
        assert [where[t].where for t in ids] == ["queued"] * 7
        assert [where[t].position for t in ids] == list(range(7))  # the oldest goes first
        cluster.scale(1)
        assert _until(lambda: locate(cluster, ids)[ids[0]].where == "running")
        where = locate(cluster, ids)
        assert {where[t].where for t in ids[1:5]} == {"held"}, {t: where[t] for t in ids}  # prefetched
        assert {where[t].where for t in ids[5:]} == {"queued"}
        cluster.workers[0].kill()
        where = locate(cluster, ids)
        # acks early acknowledges a message when its task starts: the running one is gone; the prefetched ones
        # were never acknowledged and wait in the unacked set for the visibility timeout
        assert where[ids[0]].where == "gone" and "the message is gone" in where[ids[0]].detail
        assert {where[t].where for t in ids[1:5]} == {"unacked"}, {t: where[t] for t in ids}
        assert {where[t].where for t in ids[5:]} == {"queued"}
        app.close()


def test_unacked_under_acks_late(tmp_path):
    conf = {**SHORT_VISIBILITY, "broker_transport_options": {"visibility_timeout": 3600}}
    target = load_target(app_dir(tmp_path, concurrency=1, conf=conf))
    with Cluster(target, backend="local", workers=1) as cluster:
        app = _client(cluster)
        tid = app.send_task("slow", args=[5]).id
        assert _until(lambda: locate(cluster, [tid])[tid].where == "running")
        cluster.workers[0].kill()
        where = locate(cluster, [tid])[tid]
        assert where.where == "unacked" and where.since is not None and "visibility_timeout" in where.detail
        app.close()
