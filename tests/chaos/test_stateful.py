"""Hypothesis chooses each next move (submit, cancel, poll, inject, heal, wait) against the real stack."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from chaos.stateful import machine_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_interleaved_operations_and_faults(chaos_cluster, chaos_report_dir):
    """Replay a failure with the ``--hypothesis-seed`` (or the ``@reproduce_failure`` blob) pytest prints."""
    machine = machine_for(chaos_cluster, report_dir=chaos_report_dir,
                          faults=("kill-worker", "kill-child", "pause-redis", "stop-redis", "cut", "kill-api"))
    machine.TestCase.settings = settings(max_examples=3, stateful_step_count=10, deadline=None, database=None,
                                         suppress_health_check=list(HealthCheck), print_blob=True)
    run_state_machine_as_test(machine, settings=machine.TestCase.settings)
