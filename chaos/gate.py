"""The release gate: run a profile (named scenarios + Hypothesis examples) on one cluster, write the reports,
and answer with one exit code: 0 pass, 1 a checker found a violation, 2 could not decide.

Profiles live in ``[tool.celery-chaos.profiles.NAME]``; a built-in ``default`` covers every fault family.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.checkers import CheckConfig
from chaos.cluster.cleanup import remove_leftovers
from chaos.errors import BadArguments, ChaosError
from chaos.report import (
    Report,
    ScenarioEntry,
    build_report,
    not_applicable_entry,
    scenario_entry,
    undecided_entry,
    write_all,
)
from chaos.runner import Scenario, ScenarioResult, run_scenario, versions
from chaos.scenarios import DEFAULT_SCENARIOS, RELEASE_SCENARIOS, SCENARIOS, SMOKE_SCENARIOS, build, missing
from chaos.target import Target

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "default": {
        "scenarios": list(DEFAULT_SCENARIOS),
        "properties": 3, "shrink_runs": 4, "backend": "local", "workers": 2,
    },
    "smoke": {"scenarios": list(SMOKE_SCENARIOS), "properties": 0},
    "release": {"scenarios": list(RELEASE_SCENARIOS), "properties": 20, "shrink_runs": 12, "workers": 2},
}


@dataclass
class Profile:
    name: str
    scenarios: list[str]
    properties: int = 0
    shrink_runs: int = 4
    backend: str = "local"
    workers: int | None = None
    check: CheckConfig = field(default_factory=CheckConfig)
    check_overrides: dict[str, Any] = field(default_factory=dict)  # the [check] keys the profile set itself
    scenario_checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # [check.<scenario>]: for that one

    def overrides_for(self, scenario: str) -> dict[str, Any]:
        """The profile's [check] keys for ``scenario``: its own [check.<scenario>] table over the shared ones."""
        return {**self.check_overrides, **self.scenario_checks.get(scenario, {})}

    @classmethod
    def load(cls, name: str, config: dict[str, Any]) -> Profile:
        table = {**BUILTIN_PROFILES.get(name, {}), **config.get("profiles", {}).get(name, {})}
        if not table:
            known = sorted({*BUILTIN_PROFILES, *config.get("profiles", {})})
            raise BadArguments(f"unknown profile {name!r}; known: {', '.join(known)}")
        unknown = [s for s in table.get("scenarios", []) if s not in SCENARIOS]
        if unknown:
            raise BadArguments(f"profile {name!r} names unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
        shared = dict(table.get("check", {}))
        per_scenario = {k: shared.pop(k) for k in list(shared) if isinstance(shared[k], dict)}
        unknown = [s for s in per_scenario if s not in SCENARIOS]
        if unknown:
            raise BadArguments(f"profile {name!r} has [check] tables for unknown scenarios {unknown}; "
                               f"known: {', '.join(SCENARIOS)}")
        check = CheckConfig.from_dict(shared)
        return cls(name=name, scenarios=list(table.get("scenarios", [])), properties=int(table.get("properties", 0)),
                   shrink_runs=int(table.get("shrink_runs", 4)), backend=str(table.get("backend", "local")),
                   workers=table.get("workers"), check=check, check_overrides=_set_keys(check, shared),
                   scenario_checks={s: _set_keys(CheckConfig.from_dict(t), t) for s, t in per_scenario.items()})


def _set_keys(check: CheckConfig, table: dict[str, Any]) -> dict[str, Any]:
    """The check keys a table set itself, as CheckConfig parsed them."""
    return {k: getattr(check, k) for k in table if hasattr(check, k)}


Progress = Callable[[str], None]


@dataclass
class GateOutcome:
    report: Report
    paths: dict[str, Path]
    results: list[ScenarioResult]

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


def replay_command(name: str, seed: int, selector: str | None, backend: str, scenario_file: Path | None = None) -> str:
    """The one command that replays a scenario; ``selector`` is the ``--target`` the run was given, if any."""
    tgt = f" --target {selector}" if selector else ""
    if scenario_file is not None:
        return f"chaos run --scenario-file {scenario_file} --backend {backend}{tgt}"
    return f"chaos run {name} --seed {seed} --backend {backend}{tgt}"


def run_gate(target: Target, profile: Profile, *, report_dir: Path, seed: int, backend: str | None = None,
             scenarios: list[Scenario] | None = None, progress: Progress = print,
             target_label: str | None = None, selector: str | None = None) -> GateOutcome:
    """Bring the target up once, run every scenario and the property budget, write the reports."""
    from chaos.cluster.cluster import Cluster
    from chaos.properties import run_property

    backend = backend or profile.backend
    started = time.time()
    t0 = time.monotonic()
    report_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers()
    todo = scenarios if scenarios is not None else [build(n, target, profile.overrides_for(n))
                                                    for n in profile.scenarios]
    entries: list[ScenarioEntry] = []
    order = {s.name: i for i, s in enumerate(todo)}  # the report lists scenarios in the profile's order
    for s in list(todo):
        s.seed = seed
        s.replay = s.replay or replay_command(s.name, seed, selector, backend)
        why = missing(s, target)
        if why is not None:
            entries.append(not_applicable_entry(s.name, s.description, f"n/a: {why}"))
            todo.remove(s)
    results: list[ScenarioResult] = []
    vers: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    cluster = Cluster(target, backend=backend, workers=profile.workers)
    try:
        progress(f"bringing up {target.name} on {backend} ...")
        try:
            cluster.start()
        except ChaosError as exc:
            entries.append(undecided_entry("bring-up", f"the stack did not come up: {exc}"))
            raise _Abort from None
        progress(f"up in {cluster.bring_up_seconds:.1f}s; "
                 + (f"api {cluster.api_url}" if cluster.api is not None else "no HTTP API (Celery client)"))
        extra["bring_up_s"] = round(cluster.bring_up_seconds or 0, 2)
        vers = versions(cluster)
        for i, scen in enumerate(todo, 1):
            progress(f"[{i}/{len(todo)}] {scen.name}: {scen.description}")
            try:
                cluster.reset()
                r = run_scenario(cluster, scen, report_dir)
            except ChaosError as exc:
                entries.append(undecided_entry(scen.name, str(exc)))
                progress(f"    undecided: {exc}")
                continue
            results.append(r)
            entries.append(scenario_entry(scen.name, scen.description, r.history, r.result, r.duration,
                                          r.errors, report_dir, r.history_path, scen.replay, scen.check))
            progress(f"    {entries[-1].verdict} in {r.duration:.1f}s, {len(r.result.findings)} findings"
                     + "".join(f"\n    {why}" for why in entries[-1].reasons if "undecided" in why))
        if profile.properties > 0:
            progress(f"property: {profile.properties} generated task mixes and fault schedules (seed {seed})")
            try:
                cluster.reset()
                po = run_property(cluster, budget=profile.properties, seed=seed, report_dir=report_dir,
                                  shrink_runs=profile.shrink_runs, check=profile.check)
            except ChaosError as exc:
                entries.append(undecided_entry("property", str(exc)))
            else:
                results.extend(po.runs)
                shown: list[tuple[str, ScenarioResult | None]] = (
                    [("first", po.first_failure), ("minimal", po.minimal)] if po.failed
                    else [("", r) for r in po.runs])
                for label, res in shown:
                    if res is None or (label == "minimal" and res is po.first_failure):
                        continue
                    f = next((p for p in po.replay_files if p.stem.endswith(label)), None) if label else None
                    replay = replay_command("property", seed, selector, backend, f)
                    name = f"property-{label}" if label else res.scenario.name
                    faults = ", ".join(str(x) for x in res.scenario.schedule) or "no faults"
                    rate = f"; {po.reproduction(res)}" if label else ""
                    entries.append(scenario_entry(name, f"Hypothesis example ({label or 'passed'}{rate}): {faults}",
                                                  res.history, res.result, res.duration, res.errors, report_dir,
                                                  res.history_path, replay, res.scenario.check))
                extra["property"] = {
                    "examples": po.examples, "failed": po.failed, "hypothesis": po.hypothesis_error,
                    "reproduction": {label: po.reproduction(res) for label, res in shown if label and res}}
                progress(f"    {po.examples} examples, {'FAILED' if po.failed else 'passed'}")
    except _Abort:
        pass
    finally:
        try:
            cluster.keep_logs(report_dir / "logs" / "_cluster")
        except Exception:  # noqa: BLE001
            pass
        cluster.close()
    entries.sort(key=lambda e: order.get(e.name, len(order)))
    report = build_report(entries, profile=profile.name, seed=seed, backend=backend,
                          target=target_label or target.name, versions=vers, started=started,
                          duration=time.monotonic() - t0, extra=extra)
    paths = write_all(report, report_dir, profile.check.latency_p99_ms)
    return GateOutcome(report, paths, results)


class _Abort(Exception):
    pass

