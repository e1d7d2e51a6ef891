"""Health truthfulness: a target that declares what its health endpoint says while the broker is away
(``health.degraded``) and after the heal (``health.healthy``) is held to it.

A read is judged *degraded* when it was sent at least ``settle_s`` after a broker outage began and answered
before it ended (the app may take a moment to notice), and *healthy* when it was sent ``settle_s`` after the
last fault ended. A declared field with another value is a ``health-lies`` finding; a read that failed
outright is only counted (availability judges failures). n/a when nothing is declared or no read fell in a
judged window.
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, cap_per_kind
from chaos.history import FaultWindow, History, OpPair

NAME = "health"
BROKER_OUTAGES = ("stop-redis", "kill-redis", "pause-redis")


def _accepts(expected: Any, value: str | None) -> bool:
    allowed = expected if isinstance(expected, (list, tuple)) else [expected]
    return value is not None and value in [str(a) for a in allowed]


def _mismatch(p: OpPair, declared: dict[str, Any]) -> dict[str, Any]:
    fields = (p.value or {}).get("fields") or {}
    return {f: {"said": fields.get(f), "declared": want} for f, want in declared.items()
            if not _accepts(want, fields.get(f))}


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    degraded, healthy = dict(config.health_degraded), dict(config.health_healthy)
    reads = [p for p in history.pairs("health") if p.phase == "ok" and p.completion is not None]
    windows = history.fault_windows()
    outages = [w for w in windows if w.name in BROKER_OUTAGES]
    last_end = max((w.end for w in windows if w.end is not None), default=None)
    settle = config.health_settle_s

    def in_outage(p: OpPair) -> FaultWindow | None:
        for w in outages:
            end = w.end if w.end is not None else float("inf")
            if p.invoke_time >= w.start + settle and p.complete_time <= end:
                return w
        return None

    findings: list[Finding] = []
    judged = {"degraded": 0, "healthy": 0}

    def judge(p: OpPair, declared: dict[str, Any], kind: str, when: str, evidence: dict[str, Any]) -> None:
        judged["degraded" if kind == "health-lies" else "healthy"] += 1
        wrong = _mismatch(p, declared)
        if wrong:
            said = ", ".join(f"{f}={v['said']!r}" for f, v in wrong.items())
            want = ", ".join(f"{f}={v['declared']!r}" for f, v in wrong.items())
            findings.append(Finding(
                NAME, kind, [], f"{when}, the health endpoint read at t={p.invoke_time:.1f}s said {said}; the target "
                f"declares {want}" + (" while the broker is down. A load balancer or an operator trusting it is "
                                      "misled" if kind == "health-lies" else " once the broker is back"),
                {"read": p.to_dict(), "mismatch": wrong, **evidence}))

    for p in reads:
        w = in_outage(p)
        if w is not None and degraded:
            judge(p, degraded, "health-lies", f"while {w.name} was on (t={w.start:.1f}s to {w.end or 0:.1f}s)",
                  {"fault": w.to_dict()})
        elif healthy and last_end is not None and p.invoke_time >= last_end + settle:
            judge(p, healthy, "health-stale", f"after the last fault healed (t={last_end:.1f}s)", {})
    stats: dict[str, Any] = {"reads": len(reads), "judged_degraded": judged["degraded"],
                             "judged_healthy": judged["healthy"], "lies": len(findings)}
    valid: Validity
    if findings:
        valid = False
    elif not (degraded or healthy):
        valid, stats["undecided"], stats["applicable"] = UNKNOWN, "the target declares no health fields", False
    elif not (judged["degraded"] or judged["healthy"]):
        valid, stats["applicable"] = UNKNOWN, False
        stats["undecided"] = "no health read fell in a broker outage or after the heal"
    else:
        valid = True
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)
