"""The probe in a worker container (docker backend): the records land on the host, under the cluster's workdir.

Uses the reference target. The hook is bind-mounted, not baked into the image, so any image of the target will do:
the one that matches the tree, else the newest one already built (``CELERY_CHAOS_IMAGE``), else skipped (building
one is ``chaos images build``'s job, not this test's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from chaos.cluster.cluster import Cluster
from chaos.probe import DIR_ENV, NODE_ENV, namespace_pid, read_executions, records_dir
from chaos.target import load_target

pytestmark = [pytest.mark.docker, pytest.mark.slow]

docker = pytest.importorskip("docker")
pytest.importorskip("testcontainers")

TOKEN = {"Authorization": "Bearer chaos-token"}
SUBMIT = "/api/data-sync/sync-single-file"


def _image(target: Any) -> str:
    from chaos.images import find_target_image, image_name

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker daemon answers ({type(exc).__name__})")
    try:
        exact = find_target_image(target, client)
        if exact:
            return exact
        images = sorted(client.images.list(name=image_name(target)), key=lambda i: i.attrs.get("Created", ""))
        if not images or not images[-1].tags:
            pytest.skip(f"no {image_name(target)} image built here (chaos images build)")
        return str(images[-1].tags[0])
    finally:
        client.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    target = load_target()
    mp = pytest.MonkeyPatch()
    mp.setenv("CELERY_CHAOS_IMAGE", _image(target))
    try:
        with Cluster(target, backend="docker", workers=1) as c:
            yield c
    finally:
        mp.undo()


def test_records_of_a_container_worker_reach_the_host(cluster: Cluster) -> None:
    r = httpx.post(cluster.api_url + SUBMIT, json={"file_id": 1}, headers=TOKEN, timeout=10)
    assert r.status_code in (200, 201, 202), r.text
    task_id = r.json()["celery_task_id"]
    d = records_dir(cluster.workdir)
    deadline = time.monotonic() + 60
    while True:
        result = read_executions(d, include_records=True)
        t = next((x for x in result["tasks"] if x["task_id"] == task_id), None)
        if t is not None and t["state"] == "SUCCESS" and t["executions"] and t["executions"][-1]["finished_at"]:
            break
        assert time.monotonic() < deadline, f"no SUCCESS in the records: {result['records']}"
        time.sleep(0.2)
    run = t["executions"][-1]
    assert run["outcome"] == "success" and run["node"] == "worker-0" and run["worker"].startswith("worker-0@")

    worker = cluster.workers[0]
    w = result["workers"]["worker-0"]
    # pids in the records are the container's; the host translates its own view of the pool children
    in_container = {namespace_pid(p) for p in worker.child_pids()}
    assert in_container and in_container <= set(w["child_pids"])
    main = worker._main_process()  # type: ignore[attr-defined]
    assert main is not None and main.cmdline() == worker.command  # type: ignore[attr-defined]
    env = psutil.Process(main.pid).environ()
    assert env[DIR_ENV] == "/celery-chaos-probe/records" and env[NODE_ENV] == "worker-0"
    assert env["PYTHONPATH"].split(":")[0] == "/celery-chaos-probe/hook"
