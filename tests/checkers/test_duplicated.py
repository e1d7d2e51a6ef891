from chaos.checkers import duplicated
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, execution, ledger_task


def _with(*rows):
    b = HistoryBuilder()
    for row in rows:
        b.task(row["task_id"])
    return b.ledger(*rows)


def test_clean_history_passes():
    assert duplicated.check(clean().build()).valid is True


def test_two_successful_executions():
    row = ledger_task(
        "d",
        executions=[
            execution(1, 2, worker="celery@worker-0"),
            execution(3, 4, worker="celery@worker-1", attempt=2),
        ],
    )
    r = duplicated.check(_with(row, ledger_task("ok")).build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("duplicate-success", ["d"])]


def test_excess_effects():
    r = duplicated.check(_with(ledger_task("e", effects=2, expected_effects=1)).build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("excess-effects", ["e"])]


def test_overlapping_executions():
    row = ledger_task(
        "o",
        executions=[execution(1, 5, outcome="failure"), execution(2, 3, worker="celery@worker-1", attempt=2)],
    )
    r = duplicated.check(_with(row).build())
    assert [(f.kind, f.task_ids) for f in r.findings] == [("concurrent-execution", ["o"])]


def test_fenced_execution_does_not_overlap():
    row = ledger_task(
        "o",
        executions=[execution(1, 5, outcome="fenced"), execution(2, 3, worker="celery@worker-1", attempt=2)],
    )
    assert duplicated.check(_with(row).build()).valid is True


def test_killed_worker_execution_ends_at_the_kill():
    # worker-0 dies mid-task (no finished_at); the retry on worker-1 after the kill is not a duplicate.
    row = ledger_task(
        "k",
        executions=[
            execution(1, None, outcome=None, worker="celery@worker-0"),
            execution(10, 11, worker="celery@worker-1", attempt=2),
        ],
    )
    b = _with(row).fault("kill-worker", "worker-0", 2.0, 3.0)
    assert duplicated.check(b.build()).valid is True
    # Without the kill the first execution is still open: the retry overlaps it.
    assert duplicated.check(_with(row).build()).valid is False


def test_execution_started_just_after_the_kill_window_opened_ends_at_the_kill():
    # The window opens a few ms before the SIGKILL lands: an execution starting in between still died.
    row = ledger_task(
        "k2",
        executions=[
            execution(2.03, None, outcome=None, worker="celery@worker-0"),
            execution(10, 11, worker="celery@worker-1", attempt=2),
        ],
    )
    assert duplicated.check(_with(row).fault("kill-worker", "worker-0", 2.0, 3.0).build()).valid is True
    # A pause is not a death: the paused execution is still alive, so a second one beside it is a duplicate.
    assert duplicated.check(_with(row).fault("pause-worker", "worker-0", 2.0, 3.0).build()).valid is False


def test_duplicates_allowed_keeps_findings_as_information():
    row = ledger_task("d", effects=2, executions=[execution(1, 2), execution(3, 4, attempt=2)])
    r = duplicated.check(_with(row).build(), CheckConfig(duplicates_allowed=True))
    assert r.valid is True
    assert {f.kind for f in r.findings} == {"duplicated-allowed"}
    assert {f.evidence["anomaly"] for f in r.findings} == {"duplicate-success", "excess-effects"}
    assert r.stats["duplicated_allowed"] == 1


def test_missing_ledger_is_unknown():
    assert duplicated.check(clean(ledger=False).build()).valid == UNKNOWN


def test_a_keyed_resubmit_answered_with_another_task_is_found_without_a_ledger():
    from .builder import HistoryBuilder

    b = HistoryBuilder()
    b.submit("first", at=0.0, key="k1")
    b.submit("second", at=0.5, key="k1")
    b.submit("same", at=1.0, key="k2")
    b.submit("same", at=1.5, key="k2")
    r = duplicated.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("key-not-honoured", ["first", "second"])]


def test_without_a_ledger_nor_keyed_resubmits_duplicated_abstains():
    from chaos.checkers.result import UNKNOWN

    from .builder import clean

    r = duplicated.check(clean(3, ledger=False).build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False
    assert "ledger" in r.stats["undecided"]
