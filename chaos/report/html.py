"""``report.html``: one self-contained page (inline CSS and SVG, no network) that a person grasps at a glance.

A summary, then per scenario: its verdict and findings with the replay command, a timeline of every task's life
(submit to terminal, executions from the ledger or the worker probe inside it) with the fault windows shaded, and submit latency over
time against the threshold.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.checkers.duplicated import effective_end, process_ending_faults
from chaos.history import History
from chaos.report.model import Report

COLORS = {"SUCCESS": "#2e9e5b", "FAILURE": "#e08a1e", "REVOKED": "#8a8f98", "BAD": "#d62f2f",
          "PENDING": "#b9c3cf"}
FAULT_FILL = {"worker": "#f6d6d6", "broker": "#f9e3c2", "network": "#d9e6f7", "api": "#e6dcf5"}
VERDICT_STYLE = {"pass": ("PASS", "#2e9e5b"), "fail": ("FAIL", "#d62f2f"), "unknown": ("UNDECIDED", "#e08a1e"),
                 "n/a": ("N/A", "#98a2b3")}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{padding:18px 28px;color:#fff}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.9}
main{padding:16px 28px 40px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 18px}
th,td{padding:6px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
section.scenario{background:#fff;border-radius:8px;padding:14px 18px;margin:18px 0;box-shadow:0 1px 3px #0002}
section.scenario h2{margin:0 0 4px;font-size:18px}
.muted{color:#667085} code{background:#eef1f5;padding:1px 5px;border-radius:4px;font-size:12px}
.finding{border-left:4px solid #d62f2f;background:#fdf2f2;padding:6px 10px;margin:6px 0}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:12px;height:12px;
border-radius:2px;margin-right:4px;vertical-align:-1px}
svg text{font:11px system-ui,sans-serif;fill:#344054}
"""


def _badge(verdict: str) -> str:
    label, color = VERDICT_STYLE.get(verdict, ("?", "#667085"))
    return f'<span class="badge" style="background:{color}">{label}</span>'


def _family(name: str) -> str:
    try:
        from chaos.nemesis import fault_kind

        return fault_kind(name).family
    except Exception:  # noqa: BLE001 - a history from another version
        return "broker"


def lifecycles(history: History) -> list[dict[str, Any]]:
    """Per task: submit time, terminal time (first seen), final status, executions (relative seconds)."""
    started = history.started_wall or 0.0
    t0_wall_offset = None
    tasks: dict[str, dict[str, Any]] = {}
    for pair in history.pairs("submit"):
        if pair.phase != "ok" or not pair.task_id:
            continue
        t = tasks.setdefault(pair.task_id, {"id": pair.task_id, "submit": pair.invoke_time, "end": None,
                                            "status": "PENDING", "mode": (pair.value or {}).get("mode"),
                                            "execs": []})
        t["submit"] = min(t["submit"], pair.invoke_time)
        if t0_wall_offset is None:
            t0_wall_offset = pair.invoke.wall - pair.invoke.time
    for op in history.completions():
        if op.f in ("status", "drain") and op.phase == "ok" and op.task_id in tasks:
            st = (op.value or {}).get("status")
            t = tasks[op.task_id]
            if st:
                t["status"] = st
                if st in ("SUCCESS", "FAILURE", "REVOKED") and t["end"] is None:
                    t["end"] = op.time
    ledger = history.executions()  # the target's ledger, else the worker probe's records
    offset = t0_wall_offset if t0_wall_offset is not None else started
    if ledger is not None:
        kills = process_ending_faults(history)
        for lt in ledger.tasks:
            if lt.task_id in tasks:
                tasks[lt.task_id]["ledger_state"] = lt.state
                for e in lt.executions:
                    end_wall = effective_end(e, kills)  # a killed execution ends at its kill
                    outcome = e.outcome or ("killed" if end_wall is not None else None)
                    end = (end_wall - offset) if end_wall is not None else None
                    tasks[lt.task_id]["execs"].append((e.started_at - offset, end, outcome))
    return sorted(tasks.values(), key=lambda t: t["submit"])


PLOT_LEFT = 44  # both charts of a scenario share this margin and ``time_horizon``: a moment lines up in both


def time_horizon(history: History) -> float:
    """The right edge (seconds) of a scenario's charts: its last task end, execution end, fault end or submit."""
    tasks = lifecycles(history)
    ends = [t["end"] or t["submit"] for t in tasks] + [w.end or w.start for w in history.fault_windows()]
    ends += [e[1] for t in tasks for e in t["execs"] if e[1]]
    ends += [o.time for o in history.completions("submit")]
    return max([1.0, *ends]) * 1.03


def _time_axis(x: Callable[[float], float], horizon: float, y: float) -> list[str]:
    return [f'<text x="{x(horizon * k / 10):.1f}" y="{y}" text-anchor="{"end" if k == 10 else "middle"}">'
            f'{horizon * k / 10:.1f}s</text>' for k in range(11)]  # the last label ends at the edge, uncropped


def timeline_svg(history: History, bad: set[str], width: int = 960, horizon: float | None = None) -> str:
    tasks = lifecycles(history)
    windows = history.fault_windows()
    horizon = horizon or time_horizon(history)
    n = max(1, len(tasks))
    row = 12 if n <= 40 else (6 if n <= 120 else 3)
    top, left = 34, PLOT_LEFT
    plot_w = width - left - 8
    height = top + n * row + 26
    x = lambda s: left + plot_w * max(0.0, s) / horizon  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="task timeline">']
    lanes: list[float] = []
    for w in windows:
        end = w.end if w.end is not None else horizon
        lane = next((i for i, last in enumerate(lanes) if last <= w.start), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = end
        color = FAULT_FILL.get(_family(w.name), "#eee")
        parts.append(f'<rect x="{x(w.start):.1f}" y="{top - 4}" width="{max(2.0, x(end) - x(w.start)):.1f}" '
                     f'height="{n * row + 8}" fill="{color}" opacity="0.8"><title>{html.escape(w.name)} on '
                     f'{html.escape(w.node)}: {w.start:.2f}s to {end:.2f}s</title></rect>')
        parts.append(f'<text x="{x(w.start) + 2:.1f}" y="{12 + 11 * (lane % 2)}">'
                     f'{html.escape(w.name)} ({html.escape(w.node)})</text>')
    for i, t in enumerate(tasks):
        y = top + i * row
        end = t["end"] if t["end"] is not None else horizon
        status = t["status"]
        color = COLORS["BAD"] if t["id"] in bad else COLORS.get(status, COLORS["PENDING"])
        h = max(2, row - 3)
        parts.append(f'<rect x="{x(t["submit"]):.1f}" y="{y}" width="{max(1.5, x(end) - x(t["submit"])):.1f}" '
                     f'height="{h}" fill="{color}" opacity="0.45"><title>{html.escape(t["id"])}: {status}'
                     f'{" (" + t["mode"] + ")" if t.get("mode") else ""}, submitted {t["submit"]:.2f}s'
                     f'</title></rect>')
        for (s, e, outcome) in t["execs"]:
            e2 = e if e is not None else horizon
            ec = {"success": "#1b7a43", "failure": "#b86a0c", "revoked": "#5d636b", "fenced": "#5d636b",
                  "killed": "#7a1b1b"}.get(outcome or "", "#d62f2f")
            parts.append(f'<rect x="{x(s):.1f}" y="{y}" width="{max(1.5, x(e2) - x(s)):.1f}" height="{h}" '
                         f'fill="{ec}"><title>execution {outcome or "unfinished"} {s:.2f}s'
                         f'{f" to {e:.2f}s" if e else ""}</title></rect>')
        if t["id"] in bad:
            parts.append(f'<rect x="{left}" y="{y - 1}" width="{plot_w}" height="{row}" fill="none" '
                         f'stroke="#d62f2f" stroke-width="1"/>')
    parts += _time_axis(x, horizon, top + n * row + 14)
    parts.append("</svg>")
    return "".join(parts)


def latency_svg(history: History, threshold_ms: float, width: int = 960, height: int = 170,
                horizon: float | None = None) -> str:
    pts = [(o.time, (o.latency or 0) * 1000, o.phase) for o in history.completions("submit")
           if o.latency is not None]
    if not pts:
        return '<p class="muted">no submits recorded</p>'
    horizon = horizon or time_horizon(history)
    ymax = max(threshold_ms * 1.5, max(p[1] for p in pts) * 1.1)
    left, top, bottom = PLOT_LEFT, 8, 22
    pw, ph = width - left - 8, height - top - bottom
    x = lambda s: left + pw * s / max(horizon, 1e-9)  # noqa: E731
    y = lambda ms: top + ph - ph * min(ms, ymax) / ymax  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="submit latency">']
    for w in history.fault_windows():
        end = w.end if w.end is not None else horizon
        parts.append(f'<rect x="{x(w.start):.1f}" y="{top}" width="{max(2.0, x(end) - x(w.start)):.1f}" '
                     f'height="{ph}" fill="{FAULT_FILL.get(_family(w.name), "#eee")}"/>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(threshold_ms):.1f}" y2="{y(threshold_ms):.1f}" '
                 f'stroke="#d62f2f" stroke-dasharray="4 3"/><text x="{left + pw - 4}" y="{y(threshold_ms) - 3:.1f}" '
                 f'text-anchor="end">{threshold_ms:.0f} ms</text>')
    for t, ms, phase in pts:
        c = {"ok": "#2563eb", "fail": "#d62f2f", "info": "#e08a1e"}[phase]
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(ms):.1f}" r="2.4" fill="{c}"><title>{phase} '
                     f'{ms:.1f} ms at {t:.2f}s</title></circle>')
    for k in range(0, 5):
        ms = ymax * k / 4
        parts.append(f'<text x="{left - 4}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:.0f}</text>')
    parts += _time_axis(x, horizon, height - 4)
    parts.append("</svg>")
    return "".join(parts)


def _metrics_row(m: dict[str, Any]) -> str:
    def f(v: Any, unit: str = "") -> str:
        return "–" if v is None else f"{v}{unit}"

    rec = ", ".join(f"{r['fault']} {r['seconds']}s" for r in m.get("recovery_s", [])[:4]) or "–"
    return (f"<td>{f(m.get('submit_p50_ms'), ' ms')}</td><td>{f(m.get('submit_p99_ms'), ' ms')}</td>"
            f"<td>{f(m.get('throughput_tps'), '/s')}</td><td>{html.escape(rec)}</td>")


def render_html(typed: Report, report_dir: Path, threshold_ms: float = 100.0) -> str:
    report = typed.to_dict()
    verdict = report["verdict"]
    label, color = VERDICT_STYLE.get(verdict, ("?", "#667085"))
    v = report.get("versions", {})
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>celery-chaos: {label}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<header style='background:{color}'><h1>celery-chaos gate: {label}</h1>"
           f"<p>target <b>{html.escape(str(report.get('target')))}</b> · profile "
           f"{html.escape(str(report.get('profile')))} · backend {html.escape(str(report.get('backend')))} · seed "
           f"{report.get('seed')} · {report.get('started')} · {report.get('duration_s')} s · the target's celery "
           f"{html.escape(str(v.get('celery')))} · kombu {html.escape(str(v.get('kombu')))} · redis-py "
           f"{html.escape(str(v.get('redis')))} · python {html.escape(str(v.get('python')))} · redis-server "
           f"{html.escape(str(v.get('redis-server')))}</p></header><main>"]
    out.append("<table><tr><th>scenario</th><th>verdict</th><th>faults</th><th>findings</th><th>submit p50</th>"
               "<th>submit p99</th><th>throughput</th><th>recovery</th><th>why (n/a, undecided)</th></tr>")
    for s in report["scenarios"]:
        faults = ", ".join(sorted({f["name"] for f in s["faults"]})) or "none"
        shown = [r for r in s.get("reasons", []) if s["verdict"] == "n/a" or " n/a: " not in r]
        why = "<br>".join(html.escape(r) for r in shown)
        out.append(f"<tr><td><a href='#{html.escape(s['name'])}'>{html.escape(s['name'])}</a></td>"
                   f"<td>{_badge(s['verdict'])}</td><td>{html.escape(faults)}</td><td>{len(s['findings'])}</td>"
                   f"{_metrics_row(s.get('metrics', {}))}<td class='muted'>{why}</td></tr>")
    out.append("</table>")
    abstained = sorted({r for s in report["scenarios"] if s["verdict"] != "n/a" for r in s.get("reasons", [])
                        if " n/a: " in r})
    if abstained:
        out.append("<p class='muted'>Checkers that could not judge some scenarios (they abstain; the others "
                   "decide): " + "; ".join(html.escape(r) for r in abstained) + "</p>")
    if report.get("canaries"):
        out.append(_canary_table(report["canaries"]))
    out.append("<p class='legend'>" + "".join(
        f"<span><i style='background:{c}'></i>{k.lower()}</span>" for k, c in COLORS.items()) +
        "".join(f"<span><i style='background:{c}'></i>{k} fault</span>" for k, c in FAULT_FILL.items()) +
        "<span class='muted'>dark segments: executions from the target's ledger, else from the worker probe "
        "(Celery's signals)</span></p>")
    for s in report["scenarios"]:
        out.append(f"<section class='scenario' id='{html.escape(s['name'])}'><h2>{html.escape(s['name'])} "
                   f"{_badge(s['verdict'])}</h2><p class='muted'>{html.escape(s.get('description') or '')} · "
                   f"{s['duration_s']} s · ops: " + html.escape(", ".join(
                       f"{f} {c['ok']}/{c['fail']}/{c['info']}" for f, c in s["ops"].items())) +
                   " (ok/fail/info)</p>")
        for f in s["findings"][:30]:
            ids = ", ".join(f["task_ids"][:8]) + (" …" if len(f["task_ids"]) > 8 else "")
            out.append(f"<div class='finding'><b>{html.escape(f['checker'])} / {html.escape(f['kind'])}</b>: "
                       f"{html.escape(f['message'])}<br><span class='muted'>tasks: {html.escape(ids)}</span></div>")
        if len(s["findings"]) > 30:
            out.append(f"<p class='muted'>… and {len(s['findings']) - 30} more findings in report.json</p>")
        for e in s.get("errors", []):
            out.append(f"<div class='finding' style='border-color:#e08a1e'>{html.escape(e)}</div>")
        if s.get("replay"):
            out.append(f"<p>replay: <code>{html.escape(s['replay'])}</code></p>")
        hist = report_dir / s["history"] if s.get("history") else None
        if hist and hist.exists():
            history = History.load(hist)
            bad = {t for f in s["findings"] for t in f["task_ids"]}
            horizon = time_horizon(history)
            out.append("<h3>Task timeline</h3>" + timeline_svg(history, bad, horizon=horizon))
            out.append("<h3>Submit latency (same time axis)</h3>" + latency_svg(history, threshold_ms,
                                                                                 horizon=horizon))
        out.append("</section>")
    out.append("</main></body></html>")
    return "\n".join(out)


def _canary_table(canaries: dict[str, Any]) -> str:
    rows = ["<h2>Canaries: detection matrix</h2><p class='muted'>each canary is the target with one known failure "
            "mode switched on; the gate must catch it with the expected checker</p><table><tr><th>canary</th>"
            "<th>expected checker</th><th>detected by</th><th>caught</th><th>scenario</th><th>faults</th>"
            "<th>time to detect</th></tr>"]
    for c in canaries.get("rows", []):
        badge = ('<span class="badge" style="background:#2e9e5b">CAUGHT</span>' if c.get("caught") else
                 '<span class="badge" style="background:#d62f2f">MISSED</span>')
        secs = c.get("seconds")
        rows.append(f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['expected'])}</td>"
                    f"<td>{html.escape(', '.join(c.get('detected_by', [])))}</td><td>{badge}</td>"
                    f"<td>{html.escape(c.get('scenario') or '–')}</td><td>{c.get('faults', '–')}</td>"
                    f"<td>{'–' if secs is None else f'{secs} s'}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def write_html(report: Report, report_dir: Path, threshold_ms: float = 100.0) -> Path:
    path = report_dir / "report.html"
    path.write_text(render_html(report, report_dir, threshold_ms))
    return path
