"""Availability and latency of submits, judged outside fault windows (a fault may hurt; calm must not).

A submit is *in fault* when its request interval touches a fault window extended by ``fault_grace_s``
(recovery time). Outside faults every submit must succeed (``unavailable`` otherwise, one finding per
request) and the p99 latency of the ok ones must stay under ``latency_p99_ms`` (``slow``); with fewer than
``latency_min_samples`` samples the latency part is unknown. Inside faults the error rate is reported, and
fails (``error-rate-in-faults``) only above ``error_rate_max_in_faults`` (1.0 by default: report only).
Incomplete requests count as info (errors).

Two more promises, whatever the target's outage mode: a submit during a fault must be *answered* (success or an
error) within ``answer_within_s`` (``hung``: a client left waiting is worse than a clear error), and status reads
outside fault windows must work (``read-failed``: a 5xx or an unparseable reply; inside faults they are counted).
"""

from __future__ import annotations

from typing import Any

from chaos.checkers.analysis import task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding, Validity, cap_per_kind
from chaos.history import History, OpPair
from chaos.stats import percentile

NAME = "availability"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _rate(errors: int, total: int) -> float | None:
    return None if total == 0 else errors / total


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    windows = history.fault_windows()
    submits = history.pairs("submit")

    def in_fault(p: OpPair) -> bool:
        return any(w.overlaps(p.invoke_time, p.complete_time, config.fault_grace_s) for w in windows)

    inside: list[OpPair] = []
    outside: list[OpPair] = []
    for p in submits:
        (inside if in_fault(p) else outside).append(p)
    errors_in = [p for p in inside if p.phase != "ok"]
    errors_out = [p for p in outside if p.phase != "ok"]
    latencies = [lat for p in outside if p.phase == "ok" and (lat := p.latency) is not None]
    p99 = percentile(latencies, 99)
    stats: dict[str, Any] = {
        "attempted": len(submits),
        "ok": sum(1 for p in submits if p.phase == "ok"),
        "fail": sum(1 for p in submits if p.phase == "fail"),
        "info": sum(1 for p in submits if p.phase == "info"),
        "fault_windows": len(windows),
        "in_faults": len(inside),
        "outside_faults": len(outside),
        "error_rate_in_faults": _rate(len(errors_in), len(inside)),
        "error_rate_outside_faults": _rate(len(errors_out), len(outside)),
        "latency_samples": len(latencies),
        "latency_p50_ms": _ms(percentile(latencies, 50)),
        "latency_p99_ms": _ms(p99),
        "latency_max_ms": _ms(max(latencies) if latencies else None),
        "latency_threshold_ms": config.latency_p99_ms,
    }
    findings: list[Finding] = []
    for p in errors_out:
        findings.append(
            Finding(
                NAME,
                "unavailable",
                [p.task_id] if p.task_id else [],
                f"submit by process {p.process} at t={p.invoke_time:.3f}s ended {p.phase} with no fault active"
                + (f": {p.completion.error}" if p.completion is not None and p.completion.error else ""),
                {"op": p.to_dict()},
            )
        )
    latency_known = len(latencies) >= config.latency_min_samples
    if latency_known and p99 is not None and p99 * 1000.0 > config.latency_p99_ms:
        slowest = sorted(
            (p for p in outside if p.phase == "ok" and p.latency is not None),
            key=lambda p: p.latency or 0.0,
            reverse=True,
        )[:5]
        findings.append(
            Finding(
                NAME,
                "slow",
                [],
                f"submit p99 outside faults is {p99 * 1000.0:.1f} ms, above {config.latency_p99_ms:g} ms",
                {
                    "p99_ms": _ms(p99),
                    "threshold_ms": config.latency_p99_ms,
                    "samples": len(latencies),
                    "slowest": [p.to_dict() for p in slowest],
                },
            )
        )
    findings += hung_submits(inside, config, stats)
    findings += failed_reads(history, in_fault, config, stats)
    rate_in = stats["error_rate_in_faults"]
    if rate_in is not None and rate_in > config.error_rate_max_in_faults:
        findings.append(
            Finding(
                NAME,
                "error-rate-in-faults",
                [],
                f"{rate_in:.1%} of submits during faults failed, above {config.error_rate_max_in_faults:.1%}"
                + (f" (first: {errors_in[0].completion.error})" if errors_in[0].completion is not None
                   and errors_in[0].completion.error else ""),
                # a refused or hung submit never got a task id: the evidence is the requests themselves
                {"errors": len(errors_in), "total": len(inside),
                 "failed_submits": [p.to_dict() for p in errors_in[: config.max_evidence]]},
            )
        )
    valid: Validity
    if findings:
        valid = False
    elif not latency_known and not stats["reads_outside_faults"]:
        valid = UNKNOWN
        stats["undecided"] = (
            f"only {len(latencies)} submit latency sample(s) outside faults, "
            f"{config.latency_min_samples} needed"
        )
        stats["applicable"] = False  # too few samples to judge latency: reported, not undecided
    elif not latency_known:
        valid = True
        stats["partial"] = f"only {len(latencies)} submit latency sample(s) outside faults: latency not judged"
    else:
        valid = True
    return CheckResult(NAME, valid, cap_per_kind(findings, config.max_evidence), stats)


def hung_submits(inside: list[OpPair], config: CheckConfig, stats: dict[str, Any]) -> list[Finding]:
    """Submits during faults left unanswered for longer than ``answer_within_s`` (timed out, or answered late)."""
    bound = config.answer_within_s
    if bound is None:
        return []
    hung = [p for p in inside if p.latency is None or p.latency > bound]
    stats["hung_in_faults"] = len(hung)
    out = []
    for p in hung[: config.max_evidence]:
        if p.latency is None or (p.phase != "ok" and not (p.value or {}).get("status_code")):
            waited = "got no answer" + ("" if p.latency is None else f" in {p.latency:.2f} s")
            why = ("The broker call blocked the request (a paused or unreachable broker without a socket "
                   "timeout never answers)")
        elif p.phase == "ok":
            waited = f"was accepted only after {p.latency:.2f} s"
            why = ("The publish kept retrying until the broker was back (Celery's default publish and "
                   "connection retries), holding the request meanwhile")
        else:
            waited = f"was refused only after {p.latency:.2f} s"
            why = "The publish retried for that long before it gave up"
        out.append(Finding(
            NAME, "hung", [p.task_id] if p.task_id else [],
            f"a submit sent at t={p.invoke_time:.2f}s during a fault {waited}: the client was left waiting past "
            f"{bound:g} s (broker_outage_within_s). {why}. Bound it: broker_transport_options socket_timeout "
            f"and socket_connect_timeout, task_publish_retry_policy with few retries, and answer 503, or "
            f"declare broker_outage = \"fallback\" if the API accepts tasks another way",
            {"op": p.to_dict(), "bound_s": bound}))
    return out


def failed_reads(history: History, in_fault: Any, config: CheckConfig, stats: dict[str, Any]) -> list[Finding]:
    """Status reads that got a 5xx or an unparseable reply: outside faults a finding each, inside counted."""
    reads = [p for p in history.pairs() if p.f in ("status", "drain")]
    bad_in: list[OpPair] = []
    bad_out: list[OpPair] = []
    outside = 0
    for p in reads:
        fault = in_fault(p)
        outside += 0 if fault else 1
        value = p.value or {}
        code = value.get("status_code")
        broken = p.completion is not None and ((isinstance(code, int) and code >= 500) or value.get("unparseable"))
        if broken:
            (bad_in if fault else bad_out).append(p)
    stats["reads_outside_faults"] = outside
    stats["failed_reads_outside_faults"] = len(bad_out)
    stats["failed_reads_in_faults"] = len(bad_in)
    expect = {tid: t.expect for tid, t in task_lifecycles(history).items()}
    by_task: dict[str, list[OpPair]] = {}
    for p in bad_out:
        by_task.setdefault(p.task_id or "?", []).append(p)
    out = []
    for tid, pairs in list(by_task.items())[: config.max_evidence]:
        first = pairs[0]
        code = (first.value or {}).get("status_code")
        what = "an unparseable reply" if (first.value or {}).get("unparseable") else f"HTTP {code}"
        err = first.completion.error if first.completion is not None and first.completion.error else ""
        out.append(Finding(
            NAME, "read-failed", [tid] if tid != "?" else [],
            f"{len(pairs)} status read(s) of task {tid} got {what} with no fault active (first at "
            f"t={first.invoke_time:.2f}s)" + (f": {err[:160]}" if err else "") + ". The status endpoint "
            "itself fails, so a client cannot learn the task's state. "
            + ("This task is one that ends FAILURE, and a failed task's result is its exception, which JSON "
               "cannot carry: return str(result) (or the traceback) for FAILURE"
               if expect.get(tid) == "FAILURE" else "The API's log (logs/<scenario>/api.log) has the exception"),
            {"reads": [p.to_dict() for p in pairs[:5]], "count": len(pairs)}))
    return out
