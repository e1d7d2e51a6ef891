"""Every row of the original release checklist, as a chaos scenario against the target (pytest -m chaos)."""

from __future__ import annotations

import time
import warnings

import httpx
import pytest

from chaos.gate import Profile
from chaos.pytest_plugin import target_pyproject
from chaos.runner import run_scenario
from chaos.scenarios import DEFAULT_SCENARIOS, build
from chaos.target import load_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PLAN = DEFAULT_SCENARIOS  # the rows of the plan are the default profile's scenarios


def _is_latency(finding) -> bool:  # noqa: ANN001
    return finding.checker == "availability" and finding.kind == "slow"


def describe(result) -> str:  # noqa: ANN001
    lines = [f"{f.checker}/{f.kind}: {f.message} tasks={f.task_ids[:5]}" for f in result.result.findings[:15]]
    lines += result.errors
    return "\n".join(lines)


def test_health_answers_ok(chaos_cluster):
    """Row 1 of the plan: /health answers 200, and says ok once the workers have reported in."""
    deadline = time.monotonic() + 15
    while True:
        r = httpx.get(chaos_cluster.api_url + chaos_cluster.target.http.probe_path, timeout=5)
        assert r.status_code == 200
        body = r.json()
        if body.get("status") == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body.get("status") == "ok", body


@pytest.mark.parametrize("name", PLAN)
def test_plan_row(name, chaos_cluster, chaos_report_dir, chaos_seed, request):
    # the thresholds the gate's default profile holds the target to (its own [check] tables included)
    profile = Profile.load("default", load_config(target_pyproject(request.config)))
    scenario = build(name, chaos_cluster.target, profile.overrides_for(name))
    scenario.seed = chaos_seed
    result = run_scenario(chaos_cluster, scenario, chaos_report_dir)
    # A submit p99 over the bar is the gate's verdict (chaos gate, the CI's main job), and a figure here: on a
    # shared 2-core VM a burst's p99 moved from 207 to 393 ms between two CI runs of one commit, a timing assert
    # that flakes. Every other finding fails the row.
    latency = [f for f in result.result.findings if _is_latency(f)]
    for f in latency:
        warnings.warn(f"{name}: {f.message}", stacklevel=1)
    decided = result.result.valid is True or (result.result.valid is False and len(latency) ==
                                               len(result.result.findings))
    assert decided and not result.errors, describe(result)
    # the scenario did what it says: every fault of its schedule was injected and healed
    windows = result.history.fault_windows()
    assert len(windows) == len(scenario.schedule)
    assert all(w.end is not None and not w.error for w in windows), [w.error for w in windows]


def test_redis_memory_under_1gb_after_the_plan(chaos_cluster):
    r = chaos_cluster.redis.client()
    try:
        used = int(r.info("memory")["used_memory"])
    finally:
        r.close()
    assert used < 1024**3, f"Redis uses {used} bytes"
