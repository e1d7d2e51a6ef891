"""The probe in real workers started by a Cluster (local backend): what the backend injects is what is tested.

``CELERY_CHAOS_PROBE_TEST_PYTHON=/path/to/venv/bin/python`` runs the tiny app's workers in another interpreter.

Tasks are sent from this process with ``send_task`` straight to the cluster's Redis; the records are read back
with ``read_executions`` and must tell what happened: successes, failures with their exception type, a
SIGKILLed pool child's execution left unfinished with that child's pid, retries, revokes, a graceful stop. The
worker's command line stays exactly as the target wrote it.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from chaos.cluster.cluster import Cluster
from chaos.probe import DIR_ENV, NODE_ENV, read_cluster, read_executions, records_dir
from chaos.target import load_target

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.slow

TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "tutorial" / "pyproject.toml"
# The tiny app's workers run this interpreter instead of ours when set (another Python, another Celery: the probe
# must work in any target interpreter with Celery 5.3+), e.g. a venv with celery==5.6.3 on Python 3.10.
OTHER_PYTHON = "CELERY_CHAOS_PROBE_TEST_PYTHON"


def wait_for(cluster: Cluster, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
             what: str = "records") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = read_executions(records_dir(cluster.workdir), include_records=True)
        if pred(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; records: {result['records']}")
        time.sleep(0.1)


def task(result: dict[str, Any], task_id: str) -> dict[str, Any] | None:
    return next((t for t in result["tasks"] if t["task_id"] == task_id), None)


def finished(task_id: str, state: str) -> Callable[[dict[str, Any]], bool]:
    def pred(result: dict[str, Any]) -> bool:
        t = task(result, task_id)
        return t is not None and t["state"] == state and all(e["finished_at"] for e in t["executions"])
    return pred


def client(cluster: Cluster) -> Any:
    assert cluster.redis is not None
    return celery.Celery("probe-test", broker=cluster.redis.url, backend=cluster.redis.url)


def assert_command_untouched(cluster: Cluster) -> None:
    for w in cluster.workers:
        main = psutil.Process(w.proc.pid)  # type: ignore[attr-defined]
        assert main.cmdline() == w.argv  # type: ignore[attr-defined]
        assert "celery_chaos" not in " ".join(main.cmdline())
        env = main.environ()
        assert env[DIR_ENV] == str(records_dir(cluster.workdir)) and env[NODE_ENV] == w.name


# ------------------------------------------------------------------------------------------- the tutorial app


@pytest.fixture(scope="module")
def tutorial() -> Iterator[Cluster]:
    with Cluster(load_target(TUTORIAL), backend="local", workers=1) as c:
        yield c


def test_tutorial_successes_and_failures_are_recorded(tutorial: Cluster) -> None:
    app = client(tutorial)
    try:
        ok = app.send_task("create_task", args=[1])
        bad = app.send_task("create_task", args=[-1])
        assert ok.get(timeout=30) is True
        with pytest.raises(Exception, match="not a valid type"):
            bad.get(timeout=30)
    finally:
        app.close()
    result = wait_for(tutorial, lambda r: finished(ok.id, "SUCCESS")(r) and finished(bad.id, "FAILURE")(r))
    worker = tutorial.workers[0]
    children = set(worker.child_pids())
    (run,) = task(result, ok.id)["executions"]  # type: ignore[index]
    assert run["outcome"] == "success" and run["worker"].startswith("worker-0@") and run["pid"] in children
    assert run["started_at"] < run["finished_at"]
    (failed,) = task(result, bad.id)["executions"]  # type: ignore[index]
    assert failed["outcome"] == "failure" and failed["exception"] == "ValueError"
    assert task(result, ok.id)["name"] == "create_task"  # type: ignore[index]
    w = result["workers"]["worker-0"]
    assert w["main_pids"] == [worker.proc.pid]  # type: ignore[attr-defined]
    assert {"worker_init", "worker_ready", "worker_process_init"} <= {e["event"] for e in w["events"]}
    assert read_cluster(tutorial) is not None
    assert_command_untouched(tutorial)


def test_tutorial_sigkilled_child_leaves_an_unfinished_execution(tutorial: Cluster) -> None:
    app = client(tutorial)
    try:
        long = app.send_task("create_task", args=[300])  # 30 s
        started = wait_for(tutorial, lambda r: bool(task(r, long.id) and task(r, long.id)["executions"]),
                           what="the long task's prerun")
        (run,) = task(started, long.id)["executions"]  # type: ignore[index]
        victim = tutorial.workers[0].kill_child(pid=run["pid"])
        assert victim == run["pid"]
        # the main process notices the lost child (WorkerLostError) and says so: the task is FAILURE
        result = wait_for(tutorial, lambda r: task(r, long.id)["state"] == "FAILURE",  # type: ignore[index]
                          what="the worker to report the lost child")
    finally:
        app.close()
    (run,) = task(result, long.id)["executions"]  # type: ignore[index]
    assert run["pid"] == victim and run["finished_at"] is None and run["outcome"] is None
    lost = [r for r in result["records"] if r.get("task_id") == long.id and r["event"] == "task_failure"]
    assert lost and lost[0]["exc"] == "WorkerLostError" and lost[0]["pid"] == tutorial.workers[0].proc.pid  # type: ignore[attr-defined]
    assert_command_untouched(tutorial)


# ------------------------------------------------------------------------------------------- a tiny app of our own

APP = '''
import os, time
from celery import Celery

app = Celery("probeapp", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"])


@app.task(name="probe.add")
def add(a, b):
    return a + b


@app.task(name="probe.flaky", bind=True, max_retries=3)
def flaky(self):
    if self.request.retries < 1:
        raise self.retry(countdown=0.2, exc=ConnectionError("not yet"))
    return self.request.retries


@app.task(name="probe.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds
'''

PYPROJECT = '''
[tool.celery-chaos.target]
name = "probe-app"
PYTHON_LINE
api = "{python} -m http.server {port} --bind {host}"
worker = "{python} -m celery -A probeapp worker --loglevel=info --concurrency=2 --hostname={name}@%h --without-mingle --without-gossip"

[tool.celery-chaos.target.env]
CELERY_BROKER_URL = "{redis_url}"
CELERY_RESULT_BACKEND = "{redis_url}"
PYTHONPATH = "SITE_DIR"

[tool.celery-chaos.target.http]
submit_path = "/tasks"
status_path = "/tasks/{task_id}"

[[tool.celery-chaos.target.kinds]]
name = "add"
body = {}
'''


@pytest.fixture(scope="module")
def own_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    root = tmp_path_factory.mktemp("probeapp")
    (root / "probeapp.py").write_text(textwrap.dedent(APP))
    site = root / "site"  # the target's own PYTHONPATH entry, with a sitecustomize the hook shadows
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nopen(os.path.join(os.path.dirname(__file__), f'ran-{os.getpid()}'), 'w').close()\n")
    python = os.environ.get(OTHER_PYTHON)
    text = PYPROJECT.replace("SITE_DIR", str(site)).replace("PYTHON_LINE", f"python = {python!r}" if python else "")
    (root / "pyproject.toml").write_text(text)
    with Cluster(load_target(root / "pyproject.toml"), backend="local", workers=1) as c:
        yield c, site


def test_target_pythonpath_is_kept_and_its_sitecustomize_still_runs(own_app: tuple[Cluster, Path]) -> None:
    cluster, site = own_app
    main = psutil.Process(cluster.workers[0].proc.pid)  # type: ignore[attr-defined]
    pythonpath = main.environ()["PYTHONPATH"].split(os.pathsep)
    assert pythonpath[1:] == [str(site)] and pythonpath[0].endswith(os.path.join("probe", "hook"))
    assert (site / f"ran-{main.pid}").exists()
    assert main.cmdline()[0] == cluster.target.interpreter  # {python}: ours, or CELERY_CHAOS_PROBE_TEST_PYTHON
    assert_command_untouched(cluster)


def test_retry_then_success_is_two_executions(own_app: tuple[Cluster, Path]) -> None:
    cluster, _ = own_app
    app = client(cluster)
    try:
        r = app.send_task("probe.flaky")
        assert r.get(timeout=30) == 1
    finally:
        app.close()
    result = wait_for(cluster, finished(r.id, "SUCCESS"))
    runs = task(result, r.id)["executions"]  # type: ignore[index]
    assert [(e["attempt"], e["retries"], e["outcome"]) for e in runs] == [(1, 0, "retry"), (2, 1, "success")]
    assert runs[0]["exception"] == "ConnectionError"


def test_revokes_before_and_while_running(own_app: tuple[Cluster, Path]) -> None:
    cluster, _ = own_app
    app = client(cluster)
    try:
        running = app.send_task("probe.sleep", args=[30])
        wait_for(cluster, lambda r: bool(task(r, running.id) and task(r, running.id)["executions"]),
                 what="the sleep's prerun")
        app.control.revoke(running.id, terminate=True)
        early = app.send_task("probe.sleep", args=[0], countdown=2)
        wait_for(cluster, lambda r: task(r, early.id) is not None, what="the eta task's receipt")
        app.control.revoke(early.id)
        result = wait_for(cluster, lambda r: finished(running.id, "REVOKED")(r) and finished(early.id, "REVOKED")(r),
                          what="both revokes")
    finally:
        app.close()
    (run,) = task(result, running.id)["executions"]  # type: ignore[index]
    assert run["outcome"] == "revoked" and run["finished_at"] >= run["started_at"]
    assert task(result, early.id)["executions"] == []  # type: ignore[index]
    assert task(result, early.id)["revoked_at"] is not None  # type: ignore[index]


def test_graceful_stop_records_the_shutdown(own_app: tuple[Cluster, Path]) -> None:
    cluster, _ = own_app
    worker = cluster.workers[0]
    main_pid = worker.proc.pid  # type: ignore[attr-defined]
    worker.stop(graceful=True, timeout=30)
    result = read_executions(records_dir(cluster.workdir))
    events = [e["event"] for e in result["workers"]["worker-0"]["events"] if e["pid"] == main_pid]
    assert "worker_shutting_down" in events and events[-1] == "worker_shutdown"
    worker.start()  # the next start appends to the same records dir
    result = wait_for(cluster, lambda r: len(r["workers"]["worker-0"]["main_pids"]) == 2, what="the restart")
    assert result["workers"]["worker-0"]["main_pids"][-1] == worker.proc.pid  # type: ignore[attr-defined]
