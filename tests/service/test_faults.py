"""Fault semantics on private stacks: priorities, fallback, revocation, worker/child SIGKILL."""
from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def health_timings(c: httpx.Client, n: int = 5) -> tuple[list[float], dict]:
    """Durations of n GET /health over one keep-alive connection, and the last body."""
    times, body = [], {}
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get("/health")
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200
        body = r.json()
    return times, body


def _executions_after_revoke(t: dict) -> list[dict]:
    return [e for e in t["executions"] if t["revoked_at"] is not None and e["started_at"] >= t["revoked_at"]]


def test_priority_backlog(make_stack):
    st = make_stack(concurrency=1, env={"ROW_WORK_MS": "20"})
    with st.client() as c:
        blocker = st.submit(c, 2, priority=5)["celery_task_id"]  # 25 rows x 20 ms keeps the only slot busy
        st.wait_status(c, blocker, "STARTED", timeout=10)
        low = [st.submit(c, 1, priority=0)["celery_task_id"] for _ in range(4)]
        mid = st.submit(c, 1, priority=5)["celery_task_id"]
        high = st.submit(c, 1, priority=9)["celery_task_id"]
        assert st.wait_status(c, blocker)["status"] == "SUCCESS"
        for tid in low + [mid, high]:
            assert st.wait_status(c, tid, timeout=30)["status"] == "SUCCESS"
    started = {t["task_id"]: t["executions"][0]["started_at"] for t in st.ledger()["tasks"]}
    assert started[high] < started[mid] < min(started[t] for t in low), started


def test_revoke_queued_task_never_runs(make_stack):
    st = make_stack(workers=0)  # nothing consumes yet: the task waits in Redis
    with st.client() as c:
        tid = st.submit(c, 1)["celery_task_id"]
        assert c.delete(f"/api/data-sync/cancel-task/{tid}").json()["status"] == "REVOKED"
        st.start_worker()  # the queued message is delivered now: fenced, not run
        other = st.submit(c, 1)["celery_task_id"]  # queued behind it, so it was delivered first
        assert st.wait_status(c, other)["status"] == "SUCCESS"
        time.sleep(2.2)  # > lease + several sweeps
        t = st.ledger_task(tid)
        assert t["state"] == "REVOKED" and t["executions"] == [] and t["effects"] == 0
        assert c.get(f"/api/data-sync/task-status/{tid}").json()["status"] == "REVOKED"


def test_worker_sigkill_mid_task_recovers(make_stack):
    st = make_stack()
    with st.client() as c:
        fid = st.upload(c, 200)  # ~2 s of work
        tid = st.submit(c, fid)["celery_task_id"]
        st.wait_status(c, tid, "STARTED", timeout=10)
        time.sleep(0.5)
        st.workers[0].kill()  # SIGKILL the whole worker process group
        killed_at = time.monotonic()
        st.start_worker()
        final = st.wait_status(c, tid, timeout=15)
        assert final["status"] == "SUCCESS", final
        assert time.monotonic() - killed_at < 10
    t = st.ledger_task(tid)
    assert t["effects"] == t["expected_effects"] == 200
    outcomes = [e["outcome"] for e in t["executions"]]
    assert outcomes.count("success") == 1 and outcomes[0] is None and len(outcomes) >= 2


def test_pool_child_sigkill_recovers(make_stack):
    st = make_stack()
    with st.client() as c:
        fid = st.upload(c, 200)
        tid = st.submit(c, fid)["celery_task_id"]
        st.wait_status(c, tid, "STARTED", timeout=10)
        time.sleep(0.3)
        child = st.ledger_task(tid)["executions"][0]["pid"]
        assert child != st.workers[0].proc.pid
        os.kill(child, signal.SIGKILL)
        final = st.wait_status(c, tid, timeout=15)
        assert final["status"] == "SUCCESS", final
        assert st.health()["workers"] == 1
    t = st.ledger_task(tid)
    assert t["effects"] == 200
    outcomes = [e["outcome"] for e in t["executions"]]
    assert outcomes.count("success") == 1 and outcomes[0] is None


def test_fallback_when_redis_down_then_back(make_stack):
    st = make_stack()
    with st.client() as c:
        st.stop_redis()
        time.sleep(0.5)
        h = st.health()
        assert h["status"] == "degraded" and h["redis"] == "down" and h["mode"] == "fallback"
        times, _ = health_timings(c)
        assert min(times) < 0.3 and max(times) < 1.0, times
        ids = []
        for _ in range(5):
            t0 = time.perf_counter()
            body = st.submit(c, 1)
            assert time.perf_counter() - t0 < 0.5
            assert body["mode"] == "fallback"
            ids.append(body["celery_task_id"])
        for tid in ids:
            st_ = st.wait_status(c, tid, timeout=15)
            assert st_["status"] == "SUCCESS" and st_["mode"] == "fallback"
        assert st.wait_status(c, st.submit(c, 4)["celery_task_id"])["status"] == "FAILURE"

        st.start_redis()  # same port, same AOF dir
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = st.submit(c, 1)
            if body["mode"] == "celery":
                break
            time.sleep(0.3)
        assert body["mode"] == "celery", body
        assert st.wait_status(c, body["celery_task_id"], timeout=20)["status"] == "SUCCESS"
        deadline = time.monotonic() + 10
        while st.health()["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert st.health() == {"status": "ok", "redis": "up", "workers": 1, "mode": "celery"}
    for tid in ids:
        t = st.ledger_task(tid)
        assert t["mode"] == "fallback" and t["effects"] == 5 and [e["outcome"] for e in t["executions"]] == ["success"]


def test_redis_paused_health_and_submit_stay_fast(make_stack):
    st = make_stack()
    with st.client() as c:
        st.redis.pause()  # SIGSTOP its process group
        try:
            time.sleep(0.6)
            times, h = health_timings(c)
            assert min(times) < 0.3 and max(times) < 1.0, times  # max: leeway for a loaded CI box
            assert h["redis"] == "down" and h["mode"] == "fallback"
            t0 = time.perf_counter()
            body = st.submit(c, 1)
            assert time.perf_counter() - t0 < 0.5 and body["mode"] == "fallback"
            assert st.wait_status(c, body["celery_task_id"], timeout=10)["status"] == "SUCCESS"
        finally:
            st.redis.resume()
        deadline = time.monotonic() + 10
        while st.health()["mode"] != "celery" and time.monotonic() < deadline:
            time.sleep(0.2)
        tid = st.submit(c, 1)["celery_task_id"]
        assert st.wait_status(c, tid, timeout=15)["status"] == "SUCCESS"


def test_fallback_task_survives_api_restart(make_stack):
    st = make_stack()
    with st.client() as c:
        fid = st.upload(c, 200)
        st.stop_redis()
        time.sleep(0.5)
        tid = st.submit(c, fid)["celery_task_id"]
        st.wait_status(c, tid, "STARTED", timeout=10)
        time.sleep(0.3)
        st.api.kill()  # SIGKILL mid-task, Redis still down
        st.start_api()
    with st.client() as c:
        final = st.wait_status(c, tid, timeout=20)
        assert final["status"] == "SUCCESS" and final["mode"] == "fallback", final
    t = st.ledger_task(tid)
    assert t["effects"] == 200
    outcomes = [e["outcome"] for e in t["executions"]]
    assert outcomes.count("success") == 1 and outcomes[0] is None


def test_revoke_during_outage_then_everything_restarts(make_stack):
    """Cancel is a DB write: it holds even when Redis is down and all workers restart."""
    st = make_stack()
    with st.client() as c:
        fid = st.upload(c, 300)
        tid = st.submit(c, fid)["celery_task_id"]
        st.wait_status(c, tid, "STARTED", timeout=10)
        st.stop_redis()
        t0 = time.perf_counter()
        r = c.delete(f"/api/data-sync/cancel-task/{tid}")
        assert r.status_code == 200 and time.perf_counter() - t0 < 1.0
        st.workers[0].kill()
        st.start_redis()
        st.start_worker()
        time.sleep(3)
        t = st.ledger_task(tid)
        assert t["state"] == "REVOKED" and t["effects"] == 0 and not _executions_after_revoke(t)


def test_redis_sigkill_restart_with_backlog(make_stack):
    """Redis SIGKILLed mid-backlog (AOF everysec may drop the last second) and restarted:
    every accepted task still ends SUCCESS, effects exactly once (the sweeper re-publishes)."""
    st = make_stack()
    with st.client() as c:
        ids = [st.submit(c, 2)["celery_task_id"] for _ in range(12)]  # 12 x 25 rows x 10 ms / 2 slots ~ 1.5 s
        time.sleep(0.4)
        st.stop_redis()
        time.sleep(0.5)
        st.start_redis()
        for tid in ids:
            assert st.wait_status(c, tid, timeout=30)["status"] == "SUCCESS"
    by_id = {t["task_id"]: t for t in st.ledger()["tasks"]}
    for tid in ids:
        assert by_id[tid]["effects"] == 25
        assert [e["outcome"] for e in by_id[tid]["executions"]].count("success") == 1


def test_long_outage_adopts_queued_tasks_into_fallback(make_stack):
    """Tasks accepted via Celery but stuck in a dead Redis are run by the API after 2 x LEASE_SECONDS."""
    st = make_stack(workers=0)
    with st.client() as c:
        ids = [st.submit(c, 1)["celery_task_id"] for _ in range(3)]
        assert all(c.get(f"/api/data-sync/task-status/{t}").json()["mode"] == "celery" for t in ids)
        st.stop_redis()
        for tid in ids:
            final = st.wait_status(c, tid, timeout=20)
            assert final["status"] == "SUCCESS" and final["mode"] == "fallback", final
        st.start_redis()
        st.start_worker()  # the stale messages are delivered now and fenced (mode mismatch)
        time.sleep(1.5)
    for tid in ids:
        t = st.ledger_task(tid)
        assert t["effects"] == 5 and [e["outcome"] for e in t["executions"]] == ["success"]
