"""Profiles: the default covers every fault family; unknown names are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.errors import BadArguments
from chaos.gate import Profile
from chaos.nemesis import FAULTS
from chaos.scenarios import SCENARIOS, build
from chaos.target import load_config, load_target

ROOT = Path(__file__).resolve().parents[2]


def test_default_profile_covers_every_fault_family():
    config = load_config(ROOT / "pyproject.toml")
    target = load_target(ROOT / "pyproject.toml")
    profile = Profile.load("default", config)
    families = {f for name in profile.scenarios for f in build(name, target).families}
    assert families == {k.family for k in FAULTS.values()}
    assert profile.properties > 0


def test_release_profile_runs_every_scenario():
    profile = Profile.load("release", load_config(ROOT / "pyproject.toml"))
    assert set(profile.scenarios) == set(SCENARIOS)


def test_unknown_profile_and_scenario_are_bad_arguments():
    config = load_config(ROOT / "pyproject.toml")
    with pytest.raises(BadArguments):
        Profile.load("nope", config)
    with pytest.raises(BadArguments):
        Profile.load("x", {"profiles": {"x": {"scenarios": ["no-such"]}}})


def test_the_concurrent_scenarios_hold_the_plans_bar_unless_a_profile_moves_it_for_one():
    target = load_target(ROOT / "pyproject.toml")
    for n in (10, 100):  # built in: 100 ms, judged on the whole burst
        check = build(f"concurrent-{n}", target).check
        assert (check.latency_p99_ms, check.latency_min_samples) == (100.0, min(n, 20))
    profile = Profile.load("x", {"profiles": {"x": {"scenarios": ["concurrent-10", "concurrent-100"], "check": {
        "fault_grace_s": 2.0, "concurrent-100": {"latency_p99_ms": 400}}}}})
    assert profile.overrides_for("concurrent-100") == {"fault_grace_s": 2.0, "latency_p99_ms": 400}
    assert profile.overrides_for("concurrent-10") == {"fault_grace_s": 2.0}
    assert build("concurrent-10", target, profile.overrides_for("concurrent-10")).check.latency_p99_ms == 100.0
    with pytest.raises(BadArguments, match="unknown scenarios"):
        Profile.load("x", {"profiles": {"x": {"scenarios": [], "check": {"no-such": {"latency_p99_ms": 1}}}}})


def test_the_built_in_profiles_come_from_the_one_catalogue():
    """The default's scenarios are written once (chaos.scenarios): the gate and the plan test read them, and the
    project's own pyproject does not write them again."""
    from chaos.scenarios import DEFAULT_SCENARIOS, RELEASE_SCENARIOS, SMOKE_SCENARIOS
    from tests.chaos.test_original_plan import PLAN

    config = load_config(ROOT / "pyproject.toml")
    assert Profile.load("default", config).scenarios == list(DEFAULT_SCENARIOS) == list(PLAN)
    assert Profile.load("smoke", config).scenarios == list(SMOKE_SCENARIOS)
    assert Profile.load("release", config).scenarios == list(RELEASE_SCENARIOS)
    assert RELEASE_SCENARIOS[:len(DEFAULT_SCENARIOS)] == DEFAULT_SCENARIOS
    assert len(set(RELEASE_SCENARIOS)) == len(RELEASE_SCENARIOS)
    redeclared = {name for name, table in config.get("profiles", {}).items() if "scenarios" in table} & {
        "default", "smoke", "release"}
    assert not redeclared, f"pyproject.toml repeats the built-in scenarios of {sorted(redeclared)}"
