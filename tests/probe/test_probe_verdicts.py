"""Ground truth without a ledger: the worker probe's records alone make ``duplicated`` and ``revoked_ran``
decide on an app that has no ledger (real Redis, real workers, the Celery client)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.cluster.cluster import Cluster
from chaos.nemesis import FaultSpec
from chaos.runner import Scenario, run_scenario
from chaos.target import load_target
from chaos.workload import TaskPlan

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

APP = '''
import os, time
from celery import Celery

app = Celery("redeliver", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])
app.conf.update(CONF)

@app.task(name="slow")
def slow(seconds):
    time.sleep(seconds)
    return seconds
'''

TABLE = '''
[tool.celery-chaos.target]
name = "redeliver"
client = "celery"
worker = "{python} -m celery -A redeliver worker --loglevel=info --concurrency={concurrency} --hostname={name}@%h"
workers = 1
worker_concurrency = WORKER_CONCURRENCY
timing = { quiesce_s = 25 }

[tool.celery-chaos.target.env]
CELERY_BROKER_URL = "{redis_url}"
CELERY_RESULT_BACKEND = "{redis_url}"

[[tool.celery-chaos.target.kinds]]
name = "slow"
task = "slow"
args = [3]
units = 30

[[tool.celery-chaos.target.kinds]]
name = "short"
task = "slow"
args = [0.1]
units = 1
'''


# a visibility timeout shorter than the task: kombu redelivers it while it runs (a classic misconfiguration)
SHORT_VISIBILITY = {"task_acks_late": True, "worker_prefetch_multiplier": 1, "broker_transport_options": {
    "visibility_timeout": 1, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}}


def app_dir(tmp_path: Path, concurrency: int, conf: dict | None = None) -> Path:
    (tmp_path / "redeliver.py").write_text(textwrap.dedent(APP).replace("CONF", repr(conf or {})))
    (tmp_path / "pyproject.toml").write_text(TABLE.replace("WORKER_CONCURRENCY", str(concurrency)))
    return tmp_path / "pyproject.toml"


def test_a_duplicate_execution_is_found_from_probe_records_alone(tmp_path):
    target = load_target(app_dir(tmp_path, concurrency=2, conf=SHORT_VISIBILITY))
    with Cluster(target, backend="local") as cluster:
        result = run_scenario(cluster, Scenario("redelivered", [TaskPlan("slow", at=0.0)], quiesce=20))
    assert result.history.ledger() is None and result.history.executions_source == "probe"
    found = result.result.results["duplicated"]
    assert found.valid is False, found.stats
    assert {f.kind for f in found.findings} & {"duplicate-success", "concurrent-execution"}


def test_a_revoked_task_that_ran_is_found_from_probe_records_alone(tmp_path):
    target = load_target(app_dir(tmp_path, concurrency=1))  # Celery's defaults: revokes live in worker memory
    # one slot, 4 prefetched: the 6th task waits in Redis, is revoked there, then its worker dies and the
    # replacement, which never heard of the revoke, runs it
    plans = [TaskPlan("slow", at=round(i * 0.02, 2)) for i in range(5)]
    plans.append(TaskPlan("short", at=0.3, cancel_after=0.2))
    schedule = [FaultSpec("kill-worker", "worker-0", at=1.5, duration=0.5)]
    with Cluster(target, backend="local") as cluster:
        result = run_scenario(cluster, Scenario("forgotten-revoke", plans, schedule, quiesce=20))
    verdict = result.result.results["revoked_ran"]
    assert result.history.executions_source == "probe"
    assert verdict.valid is False, (verdict.stats, [f.message for f in result.result.findings])
    assert [f.kind for f in verdict.findings] == ["ran-after-revoke"]


def test_on_the_reference_the_probe_and_the_ledger_agree():
    root = Path(__file__).resolve().parents[2]
    target = load_target(root / "pyproject.toml")
    plans = [TaskPlan(k, at=round(i * 0.1, 2)) for i, k in enumerate(["small", "medium", "small", "poison"])]
    schedule = [FaultSpec("kill-child", "worker-0", at=0.5, duration=0.1)]
    with Cluster(target, backend="local") as cluster:
        result = run_scenario(cluster, Scenario("agree", plans, schedule, quiesce=25))
    h = result.history
    ledger, probe = h.ledger(), h.probe("executions")
    assert ledger is not None and probe is not None
    probed = {t["task_id"]: t for t in probe.value["tasks"]}
    for task in ledger.tasks:
        seen = probed[task.task_id]["executions"]
        # every execution the service recorded was seen by Celery's signals on the same pid, at the same time
        for e in task.executions:
            match = [p for p in seen if p["pid"] == e.pid and abs(p["started_at"] - e.started_at) < 0.5]
            assert match, (task.task_id, e, seen)
            # finished in the ledger: finished for Celery too (the outcome words may differ: the service fails
            # a poison file itself and returns, which Celery counts as a success)
            if e.finished_at is not None:
                assert all(p["finished_at"] is not None for p in match), (task.task_id, e, match)
        assert len(seen) >= len(task.executions)
