"""The authoring API (``ChaosSession``, ``ChaosVerdict``) on a stack without processes: a tiny HTTP task API and
nodes that remember what was done to them. The workload client, the nemesis, the recorder and every checker run
for real."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings

from chaos import (
    BadArguments,
    ChaosSession,
    ChaosVerdict,
    FaultSpec,
    History,
    Scenario,
    TaskPlan,
    realtime,
    schedules,
    task_plans,
)

from .fakes import FakeCluster, fake_target


@pytest.fixture
def cluster():
    c = FakeCluster()
    yield c
    c.close()


@pytest.fixture
def session(cluster):
    s = ChaosSession(cluster, name="unit", rerun="python3 -m pytest 'tests/x.py::test_y' --chaos-seed 7")
    yield s
    s.close()


def test_submit_status_wait_and_a_passing_verdict(session):
    ids = [session.submit("short"), session.submit("long", priority=3)]
    assert all(ids) and session.task_ids == ids
    assert session.status(ids[0]) in ("PENDING", "SUCCESS")
    assert session.wait_for(ids[0], timeout=5) == "SUCCESS"
    assert session.wait_for([ids[1], None], timeout=5) == {ids[1]: "SUCCESS"}
    assert session.quiesce(timeout=5) == dict.fromkeys(ids, "SUCCESS")
    v = session.verdict()
    assert isinstance(v, ChaosVerdict)
    assert v.ok and v.valid is True and v.findings == [] and v.exit_code == 0, v.message()
    v.assert_ok()
    fs = [o.f for o in v.history.ops]
    assert fs.count("submit") == 4 and "drain" in fs  # invoke + completion each
    assert not v.history.problems()
    assert "re-run" not in v.replay and "tests/x.py::test_y" in v.replay  # the rerun command, no report dir


def test_a_stuck_task_fails_with_plain_words_and_the_replay(session):
    tid = session.submit("stuck")
    session.submit("short")
    v = session.verdict()  # quiesces by itself: the target's quiesce_s (2 s here)
    assert not v.ok and v.valid is False and v.exit_code == 1
    assert any(f.startswith("stuck/stuck: task " + tid) for f in v.findings), v.findings
    with pytest.raises(AssertionError) as exc:
        v.assert_ok()
    text = str(exc.value)
    assert "FAIL" in text and "stuck/stuck" in text and "still PENDING" in text
    assert text.splitlines()[-1] == f"replay: {v.replay}"


def test_a_failing_kind_is_a_pass_when_it_fails(session):
    tid = session.submit("bad")
    assert session.wait_for(tid, timeout=3) == "FAILURE"
    assert session.verdict().ok


def test_unknown_kind_fault_or_missing_link_is_one_sentence(session):
    with pytest.raises(BadArguments, match="has no task kind 'nope'"):
        session.submit("nope")
    with pytest.raises(BadArguments, match="unknown fault 'melt'"):
        session.inject("melt")
    with pytest.raises(BadArguments, match="name the link it cuts .*workers_redis"):
        session.inject("latency")
    with pytest.raises(BadArguments, match="unknown fault"):
        session.at(1.0, "melt")


def test_inject_heal_and_a_fault_block_are_recorded_windows(session, cluster):
    tid = session.submit("long")
    h = session.inject("kill-worker", "worker-0")
    assert not cluster.workers[0].alive() and not h.healed
    session.heal(h)
    session.heal(h)  # again: nothing
    assert cluster.workers[0].done == ["kill:9", "start"]
    with session.fault("restart-redis") as block:
        assert cluster.redis.done == ["restart"]
    assert block.healed
    with session.fault("latency", "api_redis", latency=50):
        assert cluster.proxy.toxics
    assert not cluster.proxy.toxics
    session.wait_for(tid, timeout=3)
    windows = session.recorder.history().fault_windows()
    assert [(w.name, w.node) for w in windows] == [("kill-worker", "worker-0"), ("restart-redis", "redis"),
                                                   ("latency", "api_redis")]
    assert all(w.end is not None and w.error is None for w in windows)
    assert windows[2].params == {"latency": 50}


def test_worker_faults_default_to_a_live_worker(session, cluster):
    cluster.workers[0].up = False
    h = session.inject("pause-worker")
    assert h.spec.node == "worker-1" and cluster.workers[1].paused
    session.heal(h)
    assert not cluster.workers[1].paused


def test_at_injects_later_and_heals_after_its_duration(session, cluster):
    job = session.at(0.2, "pause-redis", duration=0.3)
    assert job.state == "pending" and not cluster.redis.paused
    time.sleep(0.35)
    assert job.state == "active" and cluster.redis.paused
    assert job.wait(5) and job.state == "healed" and not cluster.redis.paused
    (w,) = session.recorder.history().fault_windows()
    assert w.name == "pause-redis" and 0.2 <= (w.end or 0) - w.start < 1.0


def test_at_is_cancelled_or_healed_at_the_end_whatever_happens(cluster):
    s = ChaosSession(cluster, name="unit-at")
    later = s.at(60, "kill-worker", "worker-1")
    now = s.at(0.0, "pause-redis", duration=60)
    deadline = time.monotonic() + 5
    while now.state != "active" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster.redis.paused
    t0 = time.monotonic()
    assert s.close() == []
    assert time.monotonic() - t0 < 5  # nobody waited the 60 s
    assert later.state == "cancelled" and cluster.workers[1].alive()
    assert now.state == "healed" and not cluster.redis.paused
    assert [w.name for w in s.recorder.history().fault_windows()] == ["pause-redis"]


def test_heal_all_heals_every_open_fault(session, cluster):
    session.inject("pause-redis")
    session.inject("cut", "workers_redis")
    assert session.heal_all() == []
    assert not cluster.redis.paused and not cluster.proxy.toxics
    assert all(w.end is not None for w in session.recorder.history().fault_windows())


def test_quiesce_waits_for_the_schedule_then_heals(session, cluster):
    tid = session.submit("short")
    job = session.at(0.1, "kill-worker", "worker-0", duration=0.4)
    states = session.quiesce(timeout=3)
    assert job.state == "healed" and cluster.workers[0].alive()
    assert states == {tid: "SUCCESS"}


def test_report_dir_gets_the_history_and_a_scenario_file_that_replays(cluster, tmp_path):
    from chaos.cli import read_scenario_file

    s = ChaosSession(cluster, name="tests/x.py::test_y[a b]", report_dir=tmp_path, seed=5)
    assert s.name == "tests-x.py-test_y-a-b"
    tid = s.submit("long")
    h = s.inject("kill-worker", "worker-0")
    time.sleep(0.2)
    s.heal(h)
    s.cancel(tid)  # the fake target declares no cancel: nothing is sent
    v = s.verdict()
    s.close()
    assert v.history_path == tmp_path / "histories" / f"{s.name}.jsonl"
    assert len(History.load(v.history_path).ops) == len(v.history.ops)
    replay = tmp_path / "replay" / f"{s.name}.json"
    assert v.replay.startswith("chaos run --scenario-file ") and str(replay.name) in v.replay
    assert "--backend fake" in v.replay
    scen = read_scenario_file(replay, cluster.target)
    assert isinstance(scen, Scenario) and scen.seed == 5
    assert [p.kind for p in scen.plans] == ["long"] and scen.plans[0].cancel_after is not None
    (f,) = scen.schedule
    assert (f.kind, f.node) == ("kill-worker", "worker-0") and 0.1 <= f.duration < 1.0
    entries = s.report_entries()
    assert [e.name for e in entries] == [s.name] and entries[0].verdict == "pass"
    assert entries[0].history == f"histories/{s.name}.jsonl"


def test_run_is_a_scenario_with_its_own_history_on_a_reset_stack(cluster, tmp_path):
    s = ChaosSession(cluster, name="unit-run", report_dir=tmp_path)
    ok = s.run([TaskPlan("short"), TaskPlan("long", at=0.1)],
               [FaultSpec("kill-worker", "worker-0", at=0.1, duration=0.2)], quiesce=3)
    assert ok.ok, ok.message()
    assert cluster.resets == 0  # the first example: the fixture reset the stack already
    bad = s.run([TaskPlan("stuck")], [], quiesce=0.5)
    assert cluster.resets == 1 and not bad.ok
    assert any(f.startswith("stuck/stuck") for f in bad.findings)
    assert "chaos run --scenario-file" in bad.replay and (tmp_path / "replay" / "unit-run-2.json").is_file()
    assert bad.history_path == tmp_path / "histories" / "unit-run-2.jsonl"
    s.close()
    assert not (tmp_path / "histories" / "unit-run.jsonl").exists()  # the session itself recorded nothing
    assert [e.verdict for e in s.report_entries()] == ["pass", "fail"]


def test_run_without_a_report_dir_describes_the_example(session):
    v = session.run([TaskPlan("stuck")], [FaultSpec("pause-redis", "redis", at=0.0, duration=0.1)], quiesce=0.3)
    assert not v.ok
    assert "the example tasks [stuck@0s]; faults [pause-redis(redis)@0.0s+0.1s]" in v.replay
    assert "--chaos-seed 7" in v.replay


def test_under_given_failures_are_remembered_and_shrinking_is_bounded(cluster):
    target = fake_target(kinds=[{"name": "short", "body": {"type": 1}}, {"name": "stuck", "body": {"type": 99}}])
    s = ChaosSession(cluster, name="unit-given", shrink_runs=2)
    seen: list[str] = []

    @settings(realtime, max_examples=6)
    @given(plans=task_plans(target, min_tasks=2, max_tasks=3, horizon=0.1, cancels=False),
           schedule=schedules(max_faults=1, kinds=("pause-redis",), horizon=0.1, max_duration=0.2))
    def prop(plans, schedule):
        v = s.run(plans, schedule, quiesce=0.3)
        seen.append(v.name)
        v.assert_ok()

    try:
        prop()
    except AssertionError as exc:
        assert "stuck/stuck" in str(exc) and "replay:" in str(exc)
        first_failure = next(i for i, (_r, v) in enumerate(s.runs) if not v.ok)
        assert len(s.runs) <= first_failure + 1 + 2  # the failure, then at most shrink_runs real runs
        assert len(seen) > len(s.runs) or len(s.runs) == first_failure + 1  # replays answered from memory
    else:
        pytest.fail(f"no example drew the stuck kind in {len(s.runs)} runs")
    finally:
        s.close()


def test_realtime_settings_and_the_chaos_profile():
    assert realtime.max_examples == 3 and realtime.deadline is None and realtime.database is None
    assert realtime.derandomize is False and len(realtime.suppress_health_check) >= 5
    assert settings.get_profile("chaos").max_examples == realtime.max_examples


def test_a_verdict_message_lists_errors_and_undecided_reasons():
    from chaos import Recorder, check_all

    rec = Recorder()
    rec.ok(rec.invoke(1, "submit", value={"kind": "short"}), task_id="t-1", value={"task_id": "t-1"})
    v = ChaosVerdict("x", check_all(rec.history()), "chaos run --scenario-file f.json", errors=["heal failed: boom"])
    assert not v.ok and v.valid == "unknown" and v.exit_code == 2
    text = v.message()
    assert "UNDECIDED" in text and "error: heal failed: boom" in text
    assert "stuck undecided: no final read nor ledger row for 1 task(s)" in text
    assert text.endswith("replay: chaos run --scenario-file f.json")


def test_the_closed_session_refuses_work(cluster):
    s = ChaosSession(cluster, name="closed")
    s.submit("short")
    s.close()
    assert s.close() == []
    with pytest.raises(Exception, match="closed"):
        s.submit("short")


def test_history_meta_names_the_test_and_its_replay(cluster, tmp_path):
    s = ChaosSession(cluster, name="m", report_dir=tmp_path, seed=3, versions={"celery": "5.7.0"})
    s.submit("short")
    s.close()
    meta = json.loads((tmp_path / "histories" / "m.jsonl").read_text().splitlines()[0])
    assert meta["scenario"] == "m" and meta["seed"] == 3 and meta["versions"] == {"celery": "5.7.0"}
    assert meta["replay"].startswith("chaos run --scenario-file")
    assert Path(tmp_path / "replay" / "m.json").is_file()
