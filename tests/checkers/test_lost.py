from chaos.checkers import lost
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, ledger_task


def test_clean_history_passes():
    r = lost.check(clean().build())
    assert r.valid is True
    assert r.findings == []
    assert r.stats["acknowledged"] == 3 and r.stats["ok"] == 3


def test_acknowledged_task_that_reads_not_found_is_lost():
    b = clean(2)
    b.submit("gone", at=5).status("gone", "NOT_FOUND", at=6).drain("gone", "NOT_FOUND")
    r = lost.check(b.build())
    assert r.valid is False
    [f] = r.findings
    assert (f.kind, f.task_ids) == ("vanished", ["gone"])
    assert f.evidence["not_found_reads"]


def test_transient_not_found_is_lost_too():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "NOT_FOUND", at=1).status("t", "SUCCESS", at=2).drain("t", "SUCCESS")
    r = lost.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("not-found-after-ack", ["t"])]


def test_missing_from_ledger():
    b = clean(2)
    b.task("ghost", at=3)  # drained SUCCESS, but the ledger never heard of it
    r = lost.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("missing-from-ledger", ["ghost"])]


def test_failed_unexpectedly_carries_the_error():
    b = HistoryBuilder()
    b.submit("t", at=0, expect="SUCCESS")
    b.op("drain", at=100, task_id="t", value={"status": "FAILURE", "error": "ZeroDivisionError"})
    r = lost.check(b.build())
    assert r.valid is False
    [f] = r.findings
    assert (f.kind, f.task_ids) == ("failed-unexpectedly", ["t"])
    assert f.evidence["error"] == "ZeroDivisionError"


def test_expected_failure_and_cancelled_failure_are_fine():
    b = HistoryBuilder()
    b.submit("bad", at=0, expect="FAILURE").drain("bad", "FAILURE")
    b.submit("cancelled", at=0).cancel("cancelled", at=1, phase="info").drain("cancelled", "FAILURE")
    r = lost.check(b.build())
    assert r.valid is True, r.findings


def test_info_submit_need_not_exist():
    b = clean(2)
    b.submit(None, at=5, phase="info")
    r = lost.check(b.build())
    assert r.valid is True


def test_info_submit_that_created_a_task_must_complete():
    b = HistoryBuilder()
    b.task("a", at=0)
    b.submit(None, at=5, phase="info")
    b.ledger(ledger_task("a"), ledger_task("hidden", state="STARTED", created=5.5))
    r = lost.check(b.build())
    assert r.valid is False
    [f] = r.findings
    assert (f.kind, f.task_ids) == ("unknown-submit-incomplete", ["hidden"])
    assert f.evidence["matched_by"] == "time"


def test_info_submit_that_completed_counts_as_recovered():
    b = HistoryBuilder()
    b.task("a", at=0)
    b.submit(None, at=5, phase="info", key="k-1")
    b.ledger(ledger_task("a"), ledger_task("k-1", created=5.5))
    r = lost.check(b.build())
    assert r.valid is True
    assert r.stats["recovered"] == 1


def test_idempotent_resubmission_returning_same_id_is_one_task():
    b = HistoryBuilder()
    b.submit("same", at=0, key="k").submit("same", at=1, key="k").drain("same", "SUCCESS")
    b.ledger(ledger_task("same"))
    r = lost.check(b.build())
    assert r.valid is True
    assert r.stats["acknowledged"] == 1


def test_without_ledger_drains_decide():
    r = lost.check(clean(ledger=False).build())
    assert r.valid is True
    assert r.stats["ledger"] is False


def test_without_ledger_or_drain_is_unknown():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "STARTED", at=1)
    r = lost.check(b.build())
    assert r.valid == UNKNOWN
    assert r.stats["unknown_fate"] == 1


def test_nothing_acknowledged_is_unknown():
    b = HistoryBuilder()
    b.submit(None, at=0, phase="fail")
    assert lost.check(b.build(), CheckConfig()).valid == UNKNOWN


def test_not_found_before_acknowledgement_does_not_count():
    # A resubmission of an idempotency key: a read concurrent with the first ack may legitimately miss it.
    b = HistoryBuilder()
    b.status("t", "NOT_FOUND", at=0.0, latency=0.02)
    b.submit("t", at=0.0, latency=0.05).drain("t", "SUCCESS")
    assert lost.check(b.build()).valid is True


def test_the_result_backend_decides_a_task_whose_reads_all_failed():
    from chaos.history import Probe

    from .builder import HistoryBuilder, wall

    b = HistoryBuilder()
    b.submit("t", at=0.0)
    b.op("drain", at=100.0, phase="info", task_id="t", value={"status_code": 500}, error="Internal Server Error")
    loc = {"where": "finished", "detail": "finished: the result backend says FAILURE (WorkerLostError)",
           "state": "FAILURE", "exception": "WorkerLostError"}
    b._add(150.0, Probe(0, "broker", 150.0, wall(150.0), {"t": {"first": loc, "second": loc}}))
    r = lost.check(b.build())
    assert r.kinds() == ["failed-unexpectedly"]
    assert "WorkerLostError" in r.findings[0].message and "task_reject_on_worker_lost" in r.findings[0].message
