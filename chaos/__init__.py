"""celery-chaos: bring a Celery + Redis stack up, hurt it, record what clients saw, and prove what happened.

The public API, for writing your own chaos tests (the pytest fixture ``chaos`` gives a ``ChaosSession``)::

    from chaos import ChaosSession, realtime, schedules, task_plans, load_target
    from chaos import Cluster, build_scenario, run_scenario, check_all  # a scenario on a stack, and its verdict

Names are imported on first use (``import chaos`` stays light: the pytest plugin imports it at startup).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it ("module:name" where the module calls it otherwise)
_EXPORTS: dict[str, str] = {
    # the stack and what it runs
    "Cluster": "chaos.cluster.cluster",
    "Target": "chaos.target",
    "load_target": "chaos.target",
    # writing tests
    "ChaosSession": "chaos.session",
    "ChaosVerdict": "chaos.session",
    "FaultHandle": "chaos.session",
    "ScheduledFault": "chaos.session",
    "realtime": "chaos.session",
    # faults and workloads as data
    "FAULTS": "chaos.nemesis",
    "FaultSpec": "chaos.nemesis",
    "TaskPlan": "chaos.workload",
    "Scenario": "chaos.runner",
    "run_scenario": "chaos.runner",
    # the named scenarios: the catalogue, and a scenario of it built for a target
    "SCENARIOS": "chaos.scenarios",
    "DEFAULT_SCENARIOS": "chaos.scenarios",
    "build_scenario": "chaos.scenarios:build",
    # Hypothesis strategies
    "task_plans": "chaos.strategies",
    "schedules": "chaos.strategies",
    "fault_specs": "chaos.strategies",
    # histories and checkers
    "Recorder": "chaos.history",
    "History": "chaos.history",
    "check_all": "chaos.checkers.compose",
    "Verdict": "chaos.checkers.compose",
    "CheckConfig": "chaos.checkers.config",
    "Finding": "chaos.checkers.result",
    # errors
    "ChaosError": "chaos.errors",
    "BadArguments": "chaos.errors",
}

__all__ = [
    "__version__",
    "Cluster", "Target", "load_target",
    "ChaosSession", "ChaosVerdict", "FaultHandle", "ScheduledFault", "realtime",
    "FAULTS", "FaultSpec", "TaskPlan", "Scenario", "run_scenario",
    "SCENARIOS", "DEFAULT_SCENARIOS", "build_scenario",
    "task_plans", "schedules", "fault_specs",
    "Recorder", "History", "check_all", "Verdict", "CheckConfig", "Finding",
    "ChaosError", "BadArguments",
]

if TYPE_CHECKING:
    from chaos.checkers.compose import Verdict, check_all
    from chaos.checkers.config import CheckConfig
    from chaos.checkers.result import Finding
    from chaos.cluster.cluster import Cluster
    from chaos.errors import BadArguments, ChaosError
    from chaos.history import History, Recorder
    from chaos.nemesis import FAULTS, FaultSpec
    from chaos.runner import Scenario, run_scenario
    from chaos.scenarios import DEFAULT_SCENARIOS, SCENARIOS
    from chaos.scenarios import build as build_scenario
    from chaos.session import ChaosSession, ChaosVerdict, FaultHandle, ScheduledFault
    from chaos.session.realtime import realtime
    from chaos.strategies import fault_specs, schedules, task_plans
    from chaos.target import Target, load_target
    from chaos.workload import TaskPlan


def __getattr__(name: str) -> Any:
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'chaos' has no attribute {name!r}")
    module, _, attr = where.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
