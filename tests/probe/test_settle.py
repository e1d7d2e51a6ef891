"""Early decision: a task that cannot finish before the quiesce deadline is decided within seconds of the heal,
not at the deadline; the app's declared recovery window is waited for first (real Redis, real workers)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from chaos.cluster.cluster import Cluster
from chaos.inspector import Location, visibility_timeout
from chaos.nemesis import FaultSpec
from chaos.probe import read_cluster
from chaos.runner import Scenario, run_scenario
from chaos.settle import Settler, hopeless
from chaos.target import load_target
from chaos.workload import TaskPlan

from .test_probe_verdicts import app_dir

DEADLINE = 1_000_000.0


def _hopeless(loc: Location, **kw) -> bool:
    args = {"deadline_epoch": DEADLINE, "visibility_s": 3600.0, "workers_alive": True, "read_failing": False}
    return hopeless(loc, **{**args, **kw})


def test_only_places_a_task_cannot_leave_by_the_deadline_are_hopeless():
    assert _hopeless(Location("gone", "gone"))
    assert not _hopeless(Location("running", "running"))
    assert not _hopeless(Location("held", "prefetched"))
    # unacked: hopeless only when the visibility timeout gives it back after the deadline
    assert _hopeless(Location("unacked", "unacked", since=DEADLINE - 100))
    assert not _hopeless(Location("unacked", "unacked", since=DEADLINE - 100), visibility_s=10.0)
    # queued: hopeless only with no worker alive to take it
    assert not _hopeless(Location("queued", "queued"))
    assert _hopeless(Location("queued", "queued"), workers_alive=False)
    # finished in the result backend: no more polling only when the client's reads of it fail
    assert not _hopeless(Location("finished", "SUCCESS"))
    assert _hopeless(Location("finished", "FAILURE"), read_failing=True)
    # without the worker probe a prefetched task looks gone: nothing is decided early
    assert not _hopeless(Location("gone", "gone"), visibility_s=None)


def test_the_visibility_timeout_is_the_workers_own():
    assert visibility_timeout({}) is None  # no probe, no settings
    assert visibility_timeout({"w": {"settings": {}}}) == 3600.0  # Celery's default when the app sets none
    assert visibility_timeout({"w": {"settings": {"visibility_timeout": 10}},
                               "v": {"settings": {"visibility_timeout": 60}}}) == 10.0


def test_the_final_looks_reuse_the_settlers_last_two_only_when_fresh_and_complete():
    cluster = SimpleNamespace(target=SimpleNamespace(timing=SimpleNamespace(recovery_s=None)))
    settler = Settler(cluster, SimpleNamespace(), healed_at=time.monotonic())  # type: ignore[arg-type]
    gone = Location("gone", "gone")
    assert settler.last_two_looks(["a"], within_s=1.0) is None  # no look yet
    settler.looks.append((time.monotonic() - 1.2, {"a": gone, "b": gone}))
    assert settler.last_two_looks(["a"], within_s=1.0) is None  # one look is no pair
    settler.looks.append((time.monotonic(), {"a": gone}))
    assert settler.last_two_looks(["a"], within_s=1.0) == ({"a": gone, "b": gone}, {"a": gone})
    assert settler.last_two_looks(["a", "b"], within_s=1.0) is None  # b was not in the later look
    settler.looks.append((time.monotonic() - 5.0, {"a": gone}))
    assert settler.last_two_looks(["a"], within_s=1.0) is None  # stale: a fresh pair is looked at


def _sigkill(quiesce: float) -> Scenario:
    plans = [TaskPlan("slow", at=0.0), *(TaskPlan("short", at=0.1 + i * 0.05) for i in range(4))]
    return Scenario("sigkill", plans, [FaultSpec("kill-worker", "worker-0", at=1.0, duration=0.5)],
                    quiesce=quiesce)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_task_lost_under_acks_early_is_decided_seconds_after_the_heal(tmp_path):
    # Celery's defaults (acks early, prefetch 4): the running task is gone, the prefetched ones wait in the
    # unacked set for an hour; neither can finish within a 60 s deadline, so neither is waited for
    target = load_target(app_dir(tmp_path, concurrency=1))
    with Cluster(target, backend="local") as cluster:
        workers = read_cluster(cluster)["workers"]
        assert workers["worker-0"]["settings"]["task_acks_late"] is False  # the worker's own settings
        started = time.monotonic()
        result = run_scenario(cluster, _sigkill(quiesce=60))
        took = time.monotonic() - started
    assert took < 20, took
    settled = result.history.settled()
    assert settled and {s["where"] for s in settled.values()} <= {"gone", "unacked"}, settled
    kinds = {f.kind for f in result.result.findings}
    assert "gone" in kinds, result.result.findings
    stuck = [f for f in result.result.findings if f.kind == "stuck"]
    assert all("before the quiesce deadline" in f.message for f in stuck)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_declared_recovery_window_is_waited_for_before_deciding(tmp_path):
    path = app_dir(tmp_path, concurrency=1)
    path.write_text(path.read_text().replace("timing = { quiesce_s = 25 }",
                                             "timing = { quiesce_s = 60, recovery_s = 12 }"))
    target = load_target(path)
    with Cluster(target, backend="local") as cluster:
        result = run_scenario(cluster, _sigkill(quiesce=60))
    settled = result.history.settled()
    heal = max(w.end for w in result.history.fault_windows() if w.end is not None)
    assert settled and min(s["at"] for s in settled.values()) >= heal + 12, (settled, heal)
