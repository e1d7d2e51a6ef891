"""The unsafe knobs (canaries) on real processes: each switches on its failure mode, and only that."""
from __future__ import annotations

import uuid

import pytest

from chaos.waiting import wait_until

pytestmark = pytest.mark.slow


def _until(pred, timeout: float, what: str):
    """Poll ``pred`` until it returns something truthy (a real condition, not a fixed sleep)."""
    return wait_until(pred, timeout, what=what, error=AssertionError)


def test_no_fallback_answers_503_and_pending_for_unknown_ids(make_stack):
    st = make_stack(env={"FALLBACK": "off", "UNKNOWN_STATUS": "pending"})
    with st.client() as c:
        unknown = str(uuid.uuid4())
        r = c.get(f"/api/data-sync/task-status/{unknown}")
        assert r.status_code == 200 and r.json()["status"] == "PENDING" and r.json()["celery_task_id"] == unknown
        assert c.delete(f"/api/data-sync/cancel-task/{unknown}").status_code == 404  # only status is Celery-like
        ok = st.submit(c, 1)
        assert ok["mode"] == "celery" and st.wait_status(c, ok["celery_task_id"])["status"] == "SUCCESS"

        st.stop_redis()
        _until(lambda: c.get("/health").json()["redis"] == "down", 10, "the API to see Redis down")
        r = c.post("/api/data-sync/sync-single-file", json={"file_id": 1})
        assert r.status_code == 503, r.text
        assert "fallback is off" in r.json()["detail"]
        listed = c.get("/api/data-sync/tasks").json()
        assert listed["total"] == 1, "the refused task was not left behind"


def test_durable_revoke_off_sends_only_celery_revoke(make_stack):
    st = make_stack(workers=0, env={"DURABLE_REVOKE": "off"})
    with st.client() as c:
        tid = st.submit(c, 1)["celery_task_id"]
        r = c.delete(f"/api/data-sync/cancel-task/{tid}")
        assert r.status_code == 200 and r.json()["status"] == "REVOKED"
        # nothing durable: the DB still says PENDING (no worker was alive to hold the in-memory revoke)
        assert c.get(f"/api/data-sync/task-status/{tid}").json()["status"] == "PENDING"
        st.start_worker()
        assert st.wait_status(c, tid, timeout=20)["status"] == "SUCCESS"


def test_reject_on_worker_lost_off_records_celerys_worker_lost_failure(make_stack):
    import os
    import signal

    import psutil

    st = make_stack(env={"TASK_REJECT_ON_WORKER_LOST": "false", "ROW_WORK_MS": "30"})
    with st.client() as c:
        tid = st.submit(c, 3)["celery_task_id"]
        st.wait_status(c, tid, {"STARTED"}, timeout=10)
        running = _until(lambda: (st.ledger_task(tid)["executions"] or [{}])[-1].get("pid"), 10,
                         "the running execution's pid in the ledger")
        assert running in {p.pid for p in psutil.Process(st.workers[0].proc.pid).children(recursive=True)}
        os.kill(running, signal.SIGKILL)
        final = st.wait_status(c, tid, timeout=15)
        assert final["status"] == "FAILURE" and "WorkerLostError" in (final["error"] or ""), final
