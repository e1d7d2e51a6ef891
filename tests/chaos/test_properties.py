"""Hypothesis draws task mixes and fault schedules; a violation shrinks to a minimal replayable schedule.

Replay a failure with the seed pytest prints (``--hypothesis-seed``) or with the JSON scenario saved under
``--chaos-report``/replay: ``chaos run --scenario-file FILE``.
"""

from __future__ import annotations

import pytest

from chaos.properties import run_property

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_generated_mixes_under_generated_faults(chaos_cluster, chaos_seed, chaos_report_dir):
    outcome = run_property(chaos_cluster, budget=3, seed=chaos_seed, report_dir=chaos_report_dir, shrink_runs=3)
    assert outcome.examples >= 1
    assert not outcome.failed, (
        f"seed {chaos_seed}: first failing schedule "
        f"{[str(f) for f in outcome.first_failure.scenario.schedule]}\n{outcome.hypothesis_error}"
    )
