import json

from chaos.checkers.analysis import task_lifecycles
from chaos.checkers.compose import REGISTRY, check_all, compose, run_checker
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, merge_valid
from chaos.history import History, Meta, Recorder

from .builder import HistoryBuilder, clean, execution, ledger_task


def test_merge_is_false_over_unknown_over_true():
    assert merge_valid([]) is True
    assert merge_valid([True, True]) is True
    assert merge_valid([True, UNKNOWN]) == UNKNOWN
    assert merge_valid([UNKNOWN, False, True]) is False


def test_compose_merges_findings_and_stats():
    a = CheckResult("a", True, [], {"n": 1})
    b = CheckResult("b", False, [Finding("b", "k", ["t"], "m")], {"n": 2})
    c = compose([a, b])
    assert c.valid is False and c.kinds() == ["k"] and c.stats == {"a": {"n": 1}, "b": {"n": 2}}


def test_results_round_trip_through_json():
    verdict = check_all(clean().build())
    text = json.dumps(verdict.to_dict())
    again = type(verdict).from_dict(json.loads(text))
    assert again.to_dict() == verdict.to_dict()


def test_clean_history_with_enough_samples_is_valid_except_fallback():
    b = clean(25)
    verdict = check_all(b.build())
    assert {n: r.valid for n, r in verdict.results.items() if r.valid is not True} == {
        "fallback_parity": UNKNOWN, "revoked_ran": UNKNOWN, "health": UNKNOWN, "worker_crash": UNKNOWN,
    }
    # a checker with nothing to judge (no fallback task, no cancel) abstains: the verdict is not undecided
    assert verdict.results["fallback_parity"].stats["applicable"] is False
    assert verdict.results["revoked_ran"].stats["applicable"] is False
    assert verdict.valid is True and verdict.exit_code == 0
    without = check_all(b.build(), checkers=[n for n in REGISTRY if n != "fallback_parity"])
    assert without.valid is True and without.exit_code == 0


def test_a_checker_the_target_cannot_feed_abstains_with_its_reason():
    from chaos.checkers.compose import reason

    config = CheckConfig(not_applicable={"revoked_ran": "the target declares no cancel"})
    verdict = check_all(clean(25).build(), config)
    r = verdict.results["revoked_ran"]
    assert r.valid == UNKNOWN and r.stats["applicable"] is False
    assert reason(r) == "the target declares no cancel"
    assert verdict.valid is True and verdict.exit_code == 0


def test_crashing_checker_becomes_unknown_evidence():
    def boom(history, config):
        raise RuntimeError("bug")

    r = run_checker("boom", boom, History(), CheckConfig())
    assert r.valid == UNKNOWN and r.kinds() == ["checker-crashed"]


def test_recorder_file_gives_the_same_verdict_as_memory(tmp_path):
    """Round trip: record a run with anomalies, load the JSONL back, get identical checker results."""
    path = tmp_path / "run.jsonl"
    with Recorder(path, Meta(scenario="rt", seed=3, target="demo")) as rec:
        started = rec.history().meta.started_wall
        ids = []
        for p in range(3):
            inv = rec.invoke(
                p,
                "submit",
                value={"kind": "add", "priority": 0, "expect": "SUCCESS", "idempotency_key": None},
            )
            tid = f"task-{p}"
            ids.append(tid)
            rec.ok(inv, task_id=tid, value={"task_id": tid, "status": "PENDING", "mode": "celery"})
        fault = rec.fault_start("kill-worker", "worker-0")
        rec.info(
            rec.invoke(
                9,
                "submit",
                value={"kind": "add", "priority": 0, "expect": "SUCCESS", "idempotency_key": None},
            ),
            error="timeout",
        )
        rec.fault_end(fault)
        rec.ok(rec.invoke(0, "cancel", task_id=ids[2]), value={"status": "REVOKED"})
        for p, tid in enumerate(ids):
            state = {0: "SUCCESS", 1: "STARTED", 2: "REVOKED"}[p]
            rec.ok(rec.invoke(p, "drain", task_id=tid), value={"status": state})
        # Ledger times are epoch seconds: place them relative to the recorder's own start.
        rows = [
            ledger_task(tid, state=state)
            for tid, state in ((ids[0], "SUCCESS"), (ids[1], "STARTED"), (ids[2], "REVOKED"))
        ]
        for row in rows:
            row["created_at"] = started
            row["executions"] = []
        rows[0]["executions"] = [  # two successful runs: a duplicate
            {**execution(0, 1), "started_at": started, "finished_at": started + 0.5},
            {**execution(0, 1, attempt=2), "started_at": started + 1, "finished_at": started + 1.5},
        ]
        rows[0]["effects"] = 2
        rows[2]["effects"] = 0
        rec.probe("ledger", {"tasks": rows})
        in_memory = check_all(rec.history())
    loaded = check_all(History.load(path))
    assert loaded.to_dict() == in_memory.to_dict()
    assert loaded.valid is False
    kinds = {(f.checker, f.kind, tuple(f.task_ids)) for f in loaded.findings}
    assert ("stuck", "stuck", ("task-1",)) in kinds
    assert ("duplicated", "duplicate-success", ("task-0",)) in kinds
    assert ("duplicated", "excess-effects", ("task-0",)) in kinds


def test_lifecycle_summary_for_the_timeline():
    b = HistoryBuilder()
    b.task("t", at=1.0)
    b.ledger(ledger_task("t", created=1.0))
    lc = task_lifecycles(b.build())["t"]
    s = lc.summary()
    assert s["first_submit_time"] == 1.0
    assert [x["status"] for x in s["statuses"]] == ["PENDING", "STARTED", "SUCCESS", "SUCCESS"]
    assert s["final_state"] == "SUCCESS" and s["final_source"] == "drain"
    assert len(s["executions"]) == 1
    json.dumps(s)


def test_timeline_orders_tasks_by_first_submit():
    from chaos.checkers.analysis import timeline

    b = HistoryBuilder()
    b.task("late", at=5).task("early", at=1)
    b.ledger(
        ledger_task("late", created=5), ledger_task("early", created=1), ledger_task("orphan", created=2)
    )
    assert [r["task_id"] for r in timeline(b.build())] == ["early", "late", "orphan"]


def test_package_exports_the_entry_points():
    import chaos.checkers as checkers

    assert checkers.check_all(clean().build(), checkers.CheckConfig()).results.keys() == REGISTRY.keys()


def test_a_run_where_nothing_was_accepted_abstains_instead_of_undeciding():
    # every submit hit the API while it was down (inside a fault window): nothing can be lost or stuck
    b = HistoryBuilder()
    b.fault("kill-api", "api", 0.0, 5.0)
    b.submit(None, at=1.0, phase="fail")
    b.submit(None, at=2.0, phase="fail")
    b.ledger()
    verdict = check_all(b.build())
    assert verdict.results["lost"].stats["applicable"] is False
    assert verdict.results["stuck"].stats["applicable"] is False
    assert verdict.valid is True
