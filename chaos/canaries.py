"""Canaries: variants of a target that each carry one known failure mode, to measure what the gate catches.

A canary is declared next to the target, as a real configuration difference (never a flag inside a checker):

    [tool.celery-chaos.canaries.acks-early]
    description = "task_acks_late off: a worker SIGKILL mid-task loses the task"
    expect = ["stuck", "lost"]            # caught when any of these checkers fails
    scenarios = ["worker-sigkill"]        # tried first (the rest of the profile follows)
    [tool.celery-chaos.canaries.acks-early.target]
    env = { TASK_ACKS_LATE = "false" }    # laid over the target table, like [tool.celery-chaos.targets.X]

and selected as ``--target canary:acks-early``. The self-test runs the gate profile against each canary until a
scenario fails with an expected checker (time to first detection), and the matrix says which checkers fired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import BadArguments, ChaosError
from chaos.report.model import CanaryMatrix, CanaryRow
from chaos.target import Target, load_config, load_target

PREFIX = "canary:"


@dataclass
class Canary:
    name: str
    description: str
    expect: list[str]
    scenarios: list[str] = field(default_factory=list)

    @property
    def target_name(self) -> str:
        return PREFIX + self.name


def canaries_from(config: dict[str, Any]) -> list[Canary]:
    out = []
    for name, table in config.get("canaries", {}).items():
        expect = table.get("expect")
        if not expect:
            raise BadArguments(f"canary {name!r} needs expect = [checker, ...]")
        out.append(Canary(name, str(table.get("description", "")), list(expect), list(table.get("scenarios", []))))
    return out


def list_canaries(pyproject: Path | None = None) -> list[dict[str, Any]]:
    return [{"name": c.target_name, "expected": "/".join(c.expect), "description": c.description}
            for c in canaries_from(load_config(pyproject))]


@dataclass
class Detection:
    """One row of the detection matrix."""

    canary: str
    description: str
    expected: list[str]
    caught: bool = False
    detected_by: list[str] = field(default_factory=list)  # every checker that failed in the detecting scenario
    scenario: str | None = None
    seconds: float | None = None  # from the start of the canary's bring-up to the detecting scenario's verdict
    bring_up_s: float | None = None  # of which the bring-up (the target's own start: imports, connections)
    faults: int | None = None  # faults in the detecting schedule
    task_ids: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    error: str | None = None

    def row(self) -> CanaryRow:
        """The report's matrix row (the first ten task ids)."""
        return CanaryRow(name=self.canary, description=self.description, expected="/".join(self.expected),
                         caught=self.caught, detected_by=self.detected_by, scenario=self.scenario,
                         seconds=self.seconds, bring_up_s=self.bring_up_s, faults=self.faults, task_ids=self.task_ids[:10], tried=self.tried,
                         error=self.error)

    def to_dict(self) -> dict[str, Any]:
        return self.row().to_dict()


def detect(canary: Canary, target: Target, scenario_names: list[str], *, backend: str = "local",
           seed: int = 0, report_dir: Path | None = None, progress: Any = print) -> Detection:
    """Run scenarios against the canary until one fails with an expected checker."""
    from chaos.cluster.cluster import Cluster
    from chaos.runner import run_scenario
    from chaos.scenarios import build, missing

    order = [*canary.scenarios, *[s for s in scenario_names if s not in canary.scenarios]]
    det = Detection(canary.target_name, canary.description, canary.expect)
    t0 = time.monotonic()
    sub = report_dir / "canaries" / canary.name if report_dir else None
    try:
        with Cluster(target, backend=backend) as cluster:
            det.bring_up_s = round(cluster.bring_up_seconds or 0.0, 1)
            for name in order:
                scen = build(name, target)
                if missing(scen, target) is not None:
                    continue
                scen.seed = seed
                cluster.reset()
                r = run_scenario(cluster, scen, sub)
                det.tried.append(name)
                failed = sorted({f.checker for f in r.result.findings
                                 if r.result.results[f.checker].valid is False})
                progress(f"    {canary.name}: {name} -> {', '.join(failed) or 'no violation'}")
                hits = [c for c in failed if c in canary.expect]
                if hits:
                    det.caught = True
                    det.detected_by = failed
                    det.scenario = name
                    det.seconds = round(time.monotonic() - t0, 1)
                    det.faults = len(scen.schedule)
                    det.task_ids = [t for f in r.result.findings if f.checker in hits for t in f.task_ids]
                    break
    except ChaosError as exc:
        det.error = str(exc)
    return det


def run_canaries(args: Any, profile: Any, seed: int, console: Any, out: Any) -> int:
    """``chaos gate --canaries``: the reference must pass and every canary must be caught; one exit code."""
    from chaos.gate import run_gate
    from chaos.report import load_json, write_all

    config = load_config(args.project)
    canaries = canaries_from(config)
    if not canaries:
        raise BadArguments("no [tool.celery-chaos.canaries.*] tables: nothing to self-test")
    backend = args.backend or profile.backend
    say = lambda m: console.print(m, markup=False)  # noqa: E731
    say(f"canaries: the reference must pass profile {profile.name}, then {len(canaries)} canaries must be caught")
    outcome = run_gate(load_target(args.project), profile, report_dir=args.report, seed=seed, backend=backend,
                       progress=say)
    rows = []
    for c in canaries:
        say(f"  canary {c.name}: {c.description}")
        det = detect(c, load_target(args.project, c.target_name), profile.scenarios, backend=backend, seed=seed,
                     report_dir=args.report, progress=say)
        rows.append(det)
        took = f" in {det.seconds} s (bring-up {det.bring_up_s} s)" if det.seconds else ""
        say(f"    {'caught by ' + ', '.join(det.detected_by) if det.caught else 'NOT CAUGHT'}{took}"
            f"{' (' + det.error + ')' if det.error else ''}")
    report = load_json(outcome.paths["json"])
    report.canaries = CanaryMatrix(rows=[d.row() for d in rows], all_caught=all(d.caught for d in rows),
                                   reference_passed=outcome.report.verdict == "pass")
    ok = report.canaries.all_caught and report.canaries.reference_passed
    if not ok and report.verdict == "pass":
        report.verdict, report.exit_code = "fail", 1
    paths = write_all(report, args.report)
    for d in rows:
        out.print(f"{d.canary:34} {'caught' if d.caught else 'MISSED':7} expected {'/'.join(d.expected):18} "
                  f"by {', '.join(d.detected_by) or '-':28} {d.scenario or '-':22} {d.seconds or '-'} s "
                  f"(bring-up {d.bring_up_s or '-'} s)",
                  markup=False)
    out.print(f"reference {outcome.report.verdict}; report: {paths['html']}", markup=False)
    return 0 if ok else 1
