"""Building the report from runs: a scenario's entry from its history and verdict, and the whole report.

The gate, the pytest plugin and the session all build entries here, so an entry that was run, one that could
not be judged and one that does not apply share one type (:class:`chaos.report.model.ScenarioEntry`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chaos.checkers.compose import Verdict, applicable, reason
from chaos.checkers.config import CheckConfig
from chaos.history import History
from chaos.report.model import (
    EXIT,
    NOT_APPLICABLE,
    FaultEntry,
    FindingEntry,
    OpCounts,
    Report,
    RunVerdict,
    ScenarioEntry,
)
from chaos.stats import percentile

LEDGER_SKEW_S = 1.0  # ledger tasks created this long before the run started still count as the run's


def verdict_of(valid: Any, errors: list[str] | None = None) -> RunVerdict:
    if valid is False:
        return "fail"
    if valid is True and not errors:
        return "pass"
    return "unknown"


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def metrics(history: History, check: CheckConfig | None = None) -> dict[str, Any]:
    """Submit latency, throughput and recovery times, from the history and its ledger.

    "Outside faults" uses the checkers' own fault grace (``check.fault_grace_s``), so the figure is the one
    the availability verdict judged.
    """
    grace = (check or CheckConfig()).fault_grace_s
    submits = [o for o in history.completions("submit") if o.latency is not None]
    ok_lat = [float(o.latency or 0.0) for o in submits if o.phase == "ok"]
    outside = [float(o.latency or 0.0) for o in submits
               if o.phase == "ok" and not history.in_fault(o.time - (o.latency or 0), o.time, grace=grace)]
    out: dict[str, Any] = {
        "submit_p50_ms": _ms(percentile(ok_lat, 50)), "submit_p99_ms": _ms(percentile(ok_lat, 99)),
        "submit_max_ms": _ms(max(ok_lat) if ok_lat else None),
        "submit_p99_ms_outside_faults": _ms(percentile(outside, 99)),
        "submits_ok": len(ok_lat),
    }
    ledger = history.ledger()
    if ledger is not None:
        started = history.started_wall or 0.0
        tasks = [t for t in ledger.tasks if t.created_at >= started - LEDGER_SKEW_S]
        done = [e.finished_at for t in tasks for e in t.executions if e.outcome == "success" and e.finished_at]
        out["tasks"] = len(tasks)
        out["terminal"] = sum(1 for t in tasks if t.state in ("SUCCESS", "FAILURE", "REVOKED"))
        if done:
            span = max(done) - min(t.created_at for t in tasks)
            out["throughput_tps"] = round(len(done) / span, 2) if span > 0 else None
        rec = []
        for w in history.fault_windows():
            if w.end_wall is None:
                continue
            after = sorted(e.started_at for t in tasks for e in t.executions if e.started_at >= w.end_wall)
            if after:
                rec.append({"fault": w.name, "node": w.node, "seconds": round(after[0] - w.start_wall, 3)})
        out["recovery_s"] = rec
    return out


def scenario_entry(name: str, description: str, history: History, result: Verdict, duration: float,
                   errors: list[str], report_dir: Path | None, history_path: Path | None,
                   replay: str | None, check: CheckConfig | None = None) -> ScenarioEntry:
    """The entry of a scenario that ran; ``check`` is the configuration its checkers judged with."""
    ops: dict[str, OpCounts] = {}
    for o in history.completions():
        counts = ops.setdefault(o.f, OpCounts())
        setattr(counts, o.phase, getattr(counts, o.phase) + 1)
    faults = [FaultEntry(name=w.name, node=w.node, start_s=round(w.start, 3),
                         end_s=None if w.end is None else round(w.end, 3), params=dict(w.params), error=w.error)
              for w in history.fault_windows()]
    checkers = {n: (r.valid if applicable(r) else NOT_APPLICABLE) for n, r in result.results.items()}
    reasons = [f"{n} undecided: {why}" for n, r in result.results.items() if applicable(r) and (why := reason(r))]
    reasons += [f"{n} n/a: {why}" for n, r in result.results.items() if not applicable(r) and (why := reason(r))]

    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        return str(p.relative_to(report_dir)) if report_dir and p.is_relative_to(report_dir) else str(p)

    return ScenarioEntry(
        name=name, description=description, verdict=verdict_of(result.valid, errors), reasons=reasons,
        duration_s=round(duration, 2), history=rel(history_path),
        logs=f"logs/{name}" if report_dir else None, replay=replay,
        faults=faults, ops=ops, checkers=checkers,
        findings=[FindingEntry(**f.to_dict()) for f in result.findings], metrics=metrics(history, check),
        errors=errors)


def not_applicable_entry(name: str, description: str, why: str) -> ScenarioEntry:
    """A scenario the target cannot take part in (it lacks what the scenario needs): neither run nor passed."""
    return ScenarioEntry(name=name, description=description, verdict=NOT_APPLICABLE, reasons=[why])


def undecided_entry(name: str, error: str, description: str = "") -> ScenarioEntry:
    """A scenario that could not be judged (the stack did not come up, a probe failed)."""
    return ScenarioEntry(name=name, description=description, verdict="unknown", errors=[error], reasons=[error])


def build_report(scenarios: list[ScenarioEntry], *, profile: str | None, seed: int | None, backend: str,
                 target: str, versions: dict[str, Any], started: float, duration: float,
                 extra: dict[str, Any] | None = None) -> Report:
    verdicts = [s.verdict for s in scenarios if s.verdict != NOT_APPLICABLE]
    verdict: RunVerdict = "fail" if "fail" in verdicts else ("unknown" if "unknown" in verdicts or not verdicts else "pass")
    return Report(verdict=verdict, exit_code=EXIT[verdict], profile=profile, seed=seed, backend=backend,
                  target=target, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  duration_s=round(duration, 1), versions=versions, scenarios=scenarios, **(extra or {}))
