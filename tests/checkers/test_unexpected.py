from chaos.checkers import CheckConfig, unexpected
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, ledger_task


def test_clean_history_passes():
    assert unexpected.check(clean().build()).valid is True


def test_task_nobody_submitted():
    b = clean(2, ledger=False)
    b.ledger(ledger_task("t0"), ledger_task("t1", created=1), ledger_task("intruder", created=3))
    r = unexpected.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("unexpected-task", ["intruder"])]


def test_tasks_from_before_the_run_are_ignored():
    b = clean(1, ledger=False)
    b.ledger(ledger_task("t0"), ledger_task("old", created=-60))
    r = unexpected.check(b.build())
    assert r.valid is True
    assert r.stats["pre_existing"] == 1


def test_info_submit_explains_one_task_only():
    b = HistoryBuilder()
    b.submit(None, at=1, phase="info")
    b.ledger(ledger_task("x", created=1.5), ledger_task("y", created=1.6))
    r = unexpected.check(b.build())
    assert r.valid is False
    assert r.stats["explained_by_unknown_submits"] == 1
    assert [f.task_ids for f in r.findings] == [["y"]]


def test_info_submit_cannot_explain_a_task_created_before_it():
    b = HistoryBuilder()
    b.submit(None, at=5, phase="info")
    b.ledger(ledger_task("early", created=2))
    assert unexpected.check(b.build()).valid is False


def test_idempotency_key_of_an_info_submit_explains_the_task():
    b = HistoryBuilder()
    b.submit(None, at=1, phase="info", key="key-1")
    b.ledger(ledger_task("key-1", created=0.5))  # even with a skewed clock: the key names it
    assert unexpected.check(b.build()).valid is True


def test_task_created_by_a_failed_submit():
    b = HistoryBuilder()
    b.submit(None, at=1, phase="fail", key="key-1")
    b.ledger(ledger_task("key-1", created=1.2))
    r = unexpected.check(b.build())
    assert [(f.kind, f.task_ids) for f in r.findings] == [("created-after-failed-submit", ["key-1"])]


def test_missing_ledger_is_unknown():
    assert unexpected.check(clean(ledger=False).build()).valid == UNKNOWN


def _probe(b: HistoryBuilder, task_id: str, status: str) -> HistoryBuilder:
    return b.op("status", at=3.0, task_id=task_id, invoke_value={"probe": "unknown-id"},
                value={"status": status})


NOT_FOUND_PROMISED = CheckConfig(unknown_ids="not-found")


def test_unknown_id_answering_pending_is_a_phantom_when_404_is_promised():
    r = unexpected.check(_probe(clean(2), "never-1", "PENDING").build(), NOT_FOUND_PROMISED)
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("phantom-status", ["never-1"])]


def test_unknown_id_answering_not_found_is_fine():
    assert unexpected.check(_probe(clean(2), "never-1", "NOT_FOUND").build()).valid is True


def test_phantom_status_is_caught_without_a_ledger():
    h = _probe(clean(2, ledger=False), "never-1", "PENDING").build()
    assert unexpected.check(h, NOT_FOUND_PROMISED).valid is False


def test_pending_for_unknown_ids_is_celerys_default_and_no_finding():
    r = unexpected.check(_probe(clean(2), "never-1", "PENDING").build())
    assert r.valid is True and not r.findings
    r = unexpected.check(_probe(clean(2, ledger=False), "never-1", "PENDING").build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False


def _executions(b: HistoryBuilder, *rows: tuple[str, str, float]) -> HistoryBuilder:
    """The worker probe's records: (task id, task name, first record) per task, no ledger."""
    from chaos.history import EXECUTIONS_PROBE, Probe

    from .builder import wall

    tasks = [{**ledger_task(tid, created=at), "name": name} for tid, name, at in rows]
    b._add(150.0, Probe(0, EXECUTIONS_PROBE, 150.0, wall(150.0), {"tasks": tasks, "probe": {"loaded": True}}))
    return b


def test_an_execution_nobody_submitted_is_found_from_probe_records():
    b = _executions(clean(2, ledger=False), ("t0", "app.add", 0.1), ("t1", "app.add", 1.1),
                    ("again", "app.add", 1.5))
    r = unexpected.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("unexpected-execution", ["again"])]
    assert "app.add" in r.findings[0].message and "new id" in r.findings[0].message


def test_the_apps_own_other_tasks_are_not_unexpected():
    # a sub-task or a periodic task of another name is the app's own work, not a client's duplicate
    b = _executions(clean(2, ledger=False), ("t0", "app.add", 0.1), ("t1", "app.add", 1.1),
                    ("child", "app.notify", 1.5))
    r = unexpected.check(b.build())
    assert r.valid is True and r.stats["other_task_names"] == 1


def test_an_unknown_fate_submit_explains_one_probe_execution():
    b = clean(1, ledger=False)
    b.submit(None, at=3, phase="info")
    _executions(b, ("t0", "app.add", 0.1), ("maybe", "app.add", 3.2))
    assert unexpected.check(b.build()).valid is True
