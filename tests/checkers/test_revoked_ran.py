from chaos.checkers import revoked_ran
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, execution, ledger_task


def _cancelled(final="REVOKED", executions=None, effects=0, ledger=True):
    b = HistoryBuilder()
    b.submit("c", at=0).cancel("c", at=1).drain("c", final)
    if ledger:
        b.ledger(
            ledger_task("c", state=final, effects=effects, revoked_at=1.005, executions=executions or [])
        )
    return b


def test_clean_cancel_passes():
    r = revoked_ran.check(_cancelled().build())
    assert r.valid is True
    assert r.stats["acknowledged"] == 1 and r.stats["revoked_tasks"] == 1


def test_no_cancels_abstains():
    r = revoked_ran.check(clean().build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False
    assert "no cancel" in r.stats["undecided"]


def test_execution_started_after_acknowledged_cancel():
    b = _cancelled(executions=[execution(2, 3, outcome="revoked")])
    r = revoked_ran.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("ran-after-revoke", ["c"])]


def test_execution_already_running_at_cancel_is_not_a_violation():
    b = _cancelled(executions=[execution(0.5, 1.5, outcome="revoked")])
    assert revoked_ran.check(b.build()).valid is True


def test_acknowledged_cancel_but_task_succeeded():
    b = _cancelled(final="SUCCESS", effects=1, executions=[execution(0.5, 2)])
    r = revoked_ran.check(b.build())
    assert [(f.kind, f.task_ids) for f in r.findings] == [("not-revoked", ["c"])]


def test_cancel_rejected_with_409_makes_no_promise():
    b = HistoryBuilder()
    b.task("done", at=0)
    b.cancel("done", at=3, phase="fail", status_code=409)
    b.ledger(ledger_task("done"))
    r = revoked_ran.check(b.build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False  # no promise was made: nothing to judge
    assert r.stats["conflicts"] == 1


def test_effects_of_a_revoked_task():
    b = _cancelled(effects=1, executions=[execution(0.5, 1.5, outcome="revoked")])
    r = revoked_ran.check(b.build())
    assert [(f.kind, f.task_ids) for f in r.findings] == [("effects-of-revoked", ["c"])]


def test_missing_ledger_judges_the_final_state_only():
    r = revoked_ran.check(_cancelled(ledger=False).build())
    assert r.valid is True
    assert "not visible" in r.stats["partial"]


def test_missing_ledger_still_catches_not_revoked():
    r = revoked_ran.check(_cancelled(final="SUCCESS", ledger=False).build())
    assert r.valid is False


def test_a_plain_celery_revoke_of_a_running_task_may_end_success():
    """control.revoke (no status in the reply) promises the task will not start, not that it ends REVOKED."""
    b = HistoryBuilder()
    b.submit("c", at=0)
    b.op("cancel", at=1, task_id="c", value={"status": None})
    b.drain("c", "SUCCESS")
    b.ledger(ledger_task("c", state="SUCCESS", executions=[execution(started=0.5, finished=2.0)]))
    r = revoked_ran.check(b.build())
    assert r.valid is True and not r.findings


def test_a_plain_celery_revoke_still_forbids_a_later_start():
    b = HistoryBuilder()
    b.submit("c", at=0)
    b.op("cancel", at=1, task_id="c", value={"status": None})
    b.drain("c", "SUCCESS")
    b.ledger(ledger_task("c", state="SUCCESS", executions=[execution(started=3.0, finished=4.0)]))
    assert revoked_ran.check(b.build()).kinds() == ["ran-after-revoke"]
