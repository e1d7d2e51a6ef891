"""The gate's detection power, measured: every canary (a target variant carrying one known Celery failure mode)
must be caught by the default profile with the expected checker, naming the task ids (``pytest -m canary``).

The correct service passing the same profile is the gate itself (``chaos gate``), run by CI on every push.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.canaries import canaries_from, detect
from chaos.gate import Profile
from chaos.target import load_config, load_target

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "pyproject.toml")
CANARIES = canaries_from(CONFIG)

pytestmark = [pytest.mark.canary, pytest.mark.slow]


@pytest.mark.parametrize("canary", CANARIES, ids=[c.name for c in CANARIES])
def test_canary_is_caught(canary, chaos_backend, chaos_seed, chaos_report_dir):
    target = load_target(ROOT / "pyproject.toml", canary.target_name)
    profile = Profile.load("default", CONFIG)
    det = detect(canary, target, profile.scenarios, backend=chaos_backend, seed=chaos_seed,
                 report_dir=chaos_report_dir, progress=print)
    print(f"detection: {json.dumps(det.to_dict())}")  # the matrix row: checker, scenario, seconds (pytest -s / -rA)
    if chaos_report_dir:
        out = Path(chaos_report_dir) / "canaries" / canary.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "detection.json").write_text(json.dumps(det.to_dict(), indent=2))
    assert det.error is None, det.error
    assert det.caught, f"{canary.name} not caught; tried {det.tried}, checkers that failed: {det.detected_by}"
    assert set(det.detected_by) & set(canary.expect)
    if set(det.detected_by) & set(canary.expect) - {"availability"}:
        # (a refused or hung submit has no task id: availability findings name the submit, not a task)
        assert det.task_ids, "the finding names the tasks"


def test_every_canary_names_a_real_checker():
    from chaos.checkers.compose import REGISTRY

    assert len(CANARIES) >= 12
    for c in CANARIES:
        assert set(c.expect) <= set(REGISTRY), c
