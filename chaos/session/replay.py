"""How a session's run is named and replayed: file names for test ids, the ``chaos run`` replay command, and a
generated example in one line."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from chaos.nemesis import FaultSpec
from chaos.target import Target
from chaos.workload import TaskPlan


def safe_name(text: str) -> str:
    """A file name for a test id: ``test_x.py::test_y[a-1]`` -> ``test_x.py-test_y-a-1``."""
    name = re.sub(r"[^\w.-]+", "-", text).strip("-.")
    return name[:150] or "chaos"


def replay_command(scenario_file: Path, target: Target, backend: str, selector: str | None = None) -> str:
    """``chaos run --scenario-file FILE`` with what it needs to find the same target (``--project`` when the
    working directory would not find it, ``--target`` for a named variant) on the same backend."""
    project = target.root / "pyproject.toml"
    here = Path.cwd().resolve()
    parts = ["chaos", "run", "--scenario-file", _rel(scenario_file, here)]
    if (here / "pyproject.toml").resolve() != project.resolve():
        parts += ["--project", _rel(project, here)]
    parts += ["--backend", backend]
    if selector:
        parts += ["--target", selector]
    return " ".join(shlex.quote(p) for p in parts)


def _rel(path: Path, here: Path) -> str:
    p = Path(path).resolve() if Path(path).is_absolute() else (here / path).resolve()
    try:
        rel = os.path.relpath(p, here)
    except ValueError:
        return str(p)
    return rel if not rel.startswith("..") else str(p)


def describe_example(plans: Sequence[TaskPlan], schedule: Sequence[FaultSpec]) -> str:
    tasks = ", ".join(f"{p.kind}@{p.at:g}s" + (f"+cancel {p.cancel_after:g}s" if p.cancel_after is not None else "")
                      for p in plans) or "none"
    faults = ", ".join(str(f) for f in schedule) or "none"
    return f"tasks [{tasks}]; faults [{faults}]"
