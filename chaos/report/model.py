"""``report.json``: the versioned, documented result of a run, the single source for junit.xml and report.html.

Schema ``celery-chaos/report@1`` (fields are added, never renamed, within a major version):

``schema``        "celery-chaos/report@1"
``verdict``       "pass" | "fail" | "unknown"        (exit codes 0 | 1 | 2)
``exit_code``     the gate's exit code
``profile``, ``seed``, ``backend``, ``target``, ``started`` (ISO 8601), ``duration_s``
``versions``      {python, celery, kombu, redis (the target's), redis-server, celery-chaos, framework-python, backend}
``scenarios[]``   per scenario:
    ``name``, ``description``, ``verdict`` ("pass" | "fail" | "unknown" | "n/a"), ``duration_s``,
    ``reasons``    why it is n/a or undecided, and which checkers abstained and why (plain sentences)
    ``history`` (path relative to the report dir),
    ``logs`` (dir), ``replay`` (one command),
    ``faults[]``   {name, node, start_s, end_s, params, error}  (seconds since the scenario start)
    ``ops``        {f: {ok, fail, info}}  client operations by outcome
    ``checkers``   {name: true | false | "unknown"}
    ``findings[]`` {checker, kind, task_ids, message, evidence}
    ``metrics``    {submit_p50_ms, submit_p99_ms, submit_max_ms, submit_p99_ms_outside_faults, tasks,
                    terminal, throughput_tps, recovery_s[]: {fault, node, seconds}}
    ``errors[]``   what the nemesis or the probes could not do (a scenario with errors is "unknown" at best)
``canaries``      optional detection matrix (see chaos.canaries)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from chaos.checkers.compose import Verdict, applicable, reason
from chaos.history import History
from chaos.stats import percentile

SCHEMA = "celery-chaos/report@1"
EXIT = {"pass": 0, "fail": 1, "unknown": 2}
NOT_APPLICABLE = "n/a"


def verdict_of(valid: Any, errors: list[str] | None = None) -> str:
    if valid is False:
        return "fail"
    if valid is True and not errors:
        return "pass"
    return "unknown"


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def metrics(history: History, grace: float = 1.0) -> dict[str, Any]:
    """Submit latency, throughput and recovery times, from the history and its ledger."""
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
        tasks = [t for t in ledger.tasks if t.created_at >= started - 1.0]
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
                   replay: str | None) -> dict[str, Any]:
    ops: dict[str, dict[str, int]] = {}
    for o in history.completions():
        ops.setdefault(o.f, {"ok": 0, "fail": 0, "info": 0})[o.phase] += 1
    faults = [{"name": w.name, "node": w.node, "start_s": round(w.start, 3),
               "end_s": None if w.end is None else round(w.end, 3), "params": dict(w.params), "error": w.error}
              for w in history.fault_windows()]
    checkers = {n: (r.valid if applicable(r) else NOT_APPLICABLE) for n, r in result.results.items()}
    reasons = [f"{n} undecided: {why}" for n, r in result.results.items() if applicable(r) and (why := reason(r))]
    reasons += [f"{n} n/a: {why}" for n, r in result.results.items() if not applicable(r) and (why := reason(r))]
    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        return str(p.relative_to(report_dir)) if report_dir and p.is_relative_to(report_dir) else str(p)

    return {
        "name": name, "description": description, "verdict": verdict_of(result.valid, errors), "reasons": reasons,
        "duration_s": round(duration, 2), "history": rel(history_path),
        "logs": f"logs/{name}" if report_dir else None, "replay": replay,
        "faults": faults, "ops": ops, "checkers": checkers,
        "findings": [f.to_dict() for f in result.findings], "metrics": metrics(history), "errors": errors,
    }


def build_report(scenarios: list[dict[str, Any]], *, profile: str | None, seed: int | None, backend: str,
                 target: str, versions: dict[str, Any], started: float, duration: float,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    verdicts = [s["verdict"] for s in scenarios if s["verdict"] != NOT_APPLICABLE]
    verdict = "fail" if "fail" in verdicts else ("unknown" if "unknown" in verdicts or not verdicts else "pass")
    return {
        "schema": SCHEMA, "verdict": verdict, "exit_code": EXIT[verdict], "profile": profile, "seed": seed,
        "backend": backend, "target": target,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "duration_s": round(duration, 1),
        "versions": versions, "scenarios": scenarios, **(extra or {}),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def load_json(path: Path) -> dict[str, Any]:
    """A report.json written by a run; anything else is a ValueError with one sentence."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("celery-chaos/report@"):
        raise ValueError(f"{path} is not a celery-chaos report")
    if not isinstance(data.get("scenarios"), list) or not all(isinstance(s, dict) for s in data["scenarios"]):
        raise ValueError(f"{path} has no scenarios list")
    return data


def not_applicable_entry(name: str, description: str, why: str) -> dict[str, Any]:
    """A scenario the target cannot take part in (it lacks what the scenario needs): neither run nor passed."""
    return {**undecided_entry(name, why), "description": description, "verdict": NOT_APPLICABLE, "errors": [],
            "reasons": [why]}


def undecided_entry(name: str, error: str) -> dict[str, Any]:
    """A scenario that could not be judged (the stack did not come up, a probe failed)."""
    return {"name": name, "description": "", "verdict": "unknown", "duration_s": 0, "history": None,
            "logs": None, "replay": None, "faults": [], "ops": {}, "checkers": {}, "findings": [], "metrics": {},
            "errors": [error], "reasons": [error]}

