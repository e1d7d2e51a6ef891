"""``chaos``'s public API: ``__all__`` is exactly what the package exports, every name imports, and
``import chaos`` stays light (the pytest plugin imports it at startup)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import chaos


def test_all_is_what_is_exported():
    exported = {"__version__", *chaos._EXPORTS}
    assert set(chaos.__all__) == exported
    assert len(chaos.__all__) == len(set(chaos.__all__))


def test_every_public_name_imports_and_comes_from_its_module():
    for name in chaos.__all__:
        value = getattr(chaos, name)
        assert value is not None, name
        if name != "__version__":
            module, _, attr = chaos._EXPORTS[name].partition(":")
            assert getattr(importlib.import_module(module), attr or name) is value
    ns: dict[str, object] = {}
    exec("from chaos import *", ns)  # noqa: S102 - the star import a user may write
    assert set(chaos.__all__) <= set(ns)
    assert set(chaos.__all__) <= set(dir(chaos))


def test_an_unknown_name_is_an_attribute_error():
    try:
        chaos.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("chaos.NoSuchThing did not raise")


def test_import_chaos_is_light():
    code = ("import sys, chaos\n"
            "heavy = [m for m in ('chaos.cluster.cluster', 'chaos.session', 'chaos.runner', 'httpx', 'hypothesis',"
            " 'celery', 'pydantic') if m in sys.modules]\n"
            "print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import chaos imported {r.stdout.strip()}"


def test_what_a_test_author_needs_is_there():
    from chaos import ChaosSession, build_scenario, load_target, realtime, schedules, task_plans

    for method in ("submit", "status", "cancel", "inject", "heal", "fault", "at", "heal_all", "wait_for",
                   "quiesce", "verdict", "run", "close"):
        assert callable(getattr(ChaosSession, method)), method
    assert callable(load_target) and callable(task_plans) and callable(schedules) and callable(build_scenario)
    assert realtime.max_examples == 3
