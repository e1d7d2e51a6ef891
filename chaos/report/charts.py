"""The report's two pictures, inline SVG on one time axis: every task's life with the fault windows shaded, and
submit latency against the threshold.

Tasks come from :func:`chaos.checkers.analysis.task_lifecycles`, the view the checkers judged, so a bar and a
finding are about the same task. Every element is built with ``Markup.format``, which escapes each value: a
fault, node or task id from the target cannot become markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup

from chaos.checkers.analysis import TaskLifecycle, effective_end, process_ending_faults, task_lifecycles
from chaos.checkers.config import CheckConfig
from chaos.history import History

COLORS = {"SUCCESS": "#2e9e5b", "FAILURE": "#e08a1e", "REVOKED": "#8a8f98", "BAD": "#d62f2f",
          "PENDING": "#b9c3cf"}
FAULT_FILL = {"worker": "#f6d6d6", "broker": "#f9e3c2", "network": "#d9e6f7", "api": "#e6dcf5"}
EXEC_FILL = {"success": "#1b7a43", "failure": "#b86a0c", "revoked": "#5d636b", "fenced": "#5d636b",
             "killed": "#7a1b1b"}
PHASE_FILL = {"ok": "#2563eb", "fail": "#d62f2f", "info": "#e08a1e"}
PLOT_LEFT = 44  # both charts of a scenario share this margin and ``time_horizon``: a moment lines up in both
Span = tuple[float, float | None, str | None]  # an execution: start, end (None: never ended), outcome


def _el(template: str, *args: Any) -> Markup:
    return Markup(template).format(*args)


def _svg(width: int, height: int, label: str, parts: list[Markup]) -> Markup:
    head = _el('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" role="img" '
               'aria-label="{}">', width, height, label)
    return head + Markup("").join(parts) + Markup("</svg>")


def family(name: str) -> str:
    try:
        from chaos.nemesis import fault_kind

        return fault_kind(name).family
    except Exception:  # noqa: BLE001 - a history from another version
        return "broker"


def submitted(history: History) -> list[TaskLifecycle]:
    """The tasks a submit was acknowledged for, in order of their first submit."""
    tasks = [t for t in task_lifecycles(history).values() if t.first_submit is not None]
    return sorted(tasks, key=lambda t: t.first_submit.invoke_time if t.first_submit else 0.0)


def spans(history: History, tasks: list[TaskLifecycle]) -> dict[str, list[Span]]:
    """Each task's executions in the history's seconds; a killed execution ends at its kill."""
    first = min((t.first_submit for t in tasks if t.first_submit), key=lambda p: p.invoke_time, default=None)
    offset = first.invoke.wall - first.invoke.time if first is not None else (history.started_wall or 0.0)
    kills = process_ending_faults(history)
    out: dict[str, list[Span]] = {}
    for t in tasks:
        rows = out.setdefault(t.task_id, [])
        for e in t.runs.executions if t.runs else []:
            end_wall = effective_end(e, kills)
            outcome = e.outcome or ("killed" if end_wall is not None else None)
            rows.append((e.started_at - offset, None if end_wall is None else end_wall - offset, outcome))
    return out


def time_horizon(history: History) -> float:
    """The right edge (seconds) of a scenario's charts: its last task end, execution end, fault end or submit."""
    tasks = submitted(history)
    terminal = CheckConfig().terminal_states
    ends = [t.terminal_seen_time(terminal) or _start(t) for t in tasks]
    ends += [w.end or w.start for w in history.fault_windows()]
    ends += [e for rows in spans(history, tasks).values() for _, e, _ in rows if e]
    ends += [o.time for o in history.completions("submit")]
    return max([1.0, *ends]) * 1.03


def _start(t: TaskLifecycle) -> float:
    return t.first_submit.invoke_time if t.first_submit else 0.0


def _time_axis(x: Callable[[float], float], horizon: float, y: float) -> list[Markup]:
    return [_el('<text x="{:.1f}" y="{}" text-anchor="{}">{:.1f}s</text>', x(horizon * k / 10), y,
                "end" if k == 10 else "middle", horizon * k / 10)
            for k in range(11)]  # the last label ends at the edge, uncropped


def timeline_svg(history: History, bad: set[str], width: int = 960, horizon: float | None = None) -> Markup:
    tasks = submitted(history)
    runs = spans(history, tasks)
    terminal = CheckConfig().terminal_states
    windows = history.fault_windows()
    horizon = horizon or time_horizon(history)
    n = max(1, len(tasks))
    row = 12 if n <= 40 else (6 if n <= 120 else 3)
    top, left = 34, PLOT_LEFT
    plot_w = width - left - 8
    height = top + n * row + 26
    x = lambda s: left + plot_w * max(0.0, s) / horizon  # noqa: E731
    parts: list[Markup] = []
    lanes: list[float] = []
    for w in windows:
        end = w.end if w.end is not None else horizon
        lane = next((i for i, last in enumerate(lanes) if last <= w.start), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = end
        parts.append(_el('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}" opacity="0.8"><title>{} on '
                         '{}: {:.2f}s to {:.2f}s</title></rect>', x(w.start), top - 4,
                         max(2.0, x(end) - x(w.start)), n * row + 8, FAULT_FILL.get(family(w.name), "#eee"),
                         w.name, w.node, w.start, end))
        parts.append(_el('<text x="{:.1f}" y="{}">{} ({})</text>', x(w.start) + 2, 12 + 11 * (lane % 2), w.name,
                         w.node))
    for i, t in enumerate(tasks):
        y = top + i * row
        start = _start(t)
        seen = t.terminal_seen_time(terminal)
        end = seen if seen is not None else horizon
        status = t.last_read_status or "PENDING"
        color = COLORS["BAD"] if t.task_id in bad else COLORS.get(status, COLORS["PENDING"])
        h = max(2, row - 3)
        parts.append(_el('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}" opacity="0.45"><title>{}: {}'
                         '{}, submitted {:.2f}s</title></rect>', x(start), y, max(1.5, x(end) - x(start)), h, color,
                         t.task_id, status, f" ({t.mode})" if t.mode else "", start))
        for (s, e, outcome) in runs[t.task_id]:
            e2 = e if e is not None else horizon
            parts.append(_el('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>execution {} {:.2f}s'
                             '{}</title></rect>', x(s), y, max(1.5, x(e2) - x(s)), h,
                             EXEC_FILL.get(outcome or "", "#d62f2f"), outcome or "unfinished", s,
                             f" to {e:.2f}s" if e else ""))
        if t.task_id in bad:
            parts.append(_el('<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#d62f2f" '
                             'stroke-width="1"/>', left, y - 1, plot_w, row))
    parts += _time_axis(x, horizon, top + n * row + 14)
    return _svg(width, height, "task timeline", parts)


def latency_svg(history: History, threshold_ms: float, width: int = 960, height: int = 170,
                horizon: float | None = None) -> Markup:
    pts = [(o.time, (o.latency or 0) * 1000, o.phase) for o in history.completions("submit")
           if o.latency is not None]
    if not pts:
        return Markup('<p class="muted">no submits recorded</p>')
    horizon = horizon or time_horizon(history)
    ymax = max(threshold_ms * 1.5, max(p[1] for p in pts) * 1.1)
    left, top, bottom = PLOT_LEFT, 8, 22
    pw, ph = width - left - 8, height - top - bottom
    x = lambda s: left + pw * s / max(horizon, 1e-9)  # noqa: E731
    y = lambda ms: top + ph - ph * min(ms, ymax) / ymax  # noqa: E731
    parts: list[Markup] = []
    for w in history.fault_windows():
        end = w.end if w.end is not None else horizon
        parts.append(_el('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}"/>', x(w.start), top,
                         max(2.0, x(end) - x(w.start)), ph, FAULT_FILL.get(family(w.name), "#eee")))
    parts.append(_el('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#d62f2f" stroke-dasharray="4 3"/>'
                     '<text x="{}" y="{:.1f}" text-anchor="end">{:.0f} ms</text>', left, left + pw, y(threshold_ms),
                     y(threshold_ms), left + pw - 4, y(threshold_ms) - 3, threshold_ms))
    for t, ms, phase in pts:
        parts.append(_el('<circle cx="{:.1f}" cy="{:.1f}" r="2.4" fill="{}"><title>{} {:.1f} ms at {:.2f}s</title>'
                         '</circle>', x(t), y(ms), PHASE_FILL[phase], phase, ms, t))
    for k in range(0, 5):
        ms = ymax * k / 4
        parts.append(_el('<text x="{}" y="{:.1f}" text-anchor="end">{:.0f}</text>', left - 4, y(ms) + 4, ms))
    parts += _time_axis(x, horizon, height - 4)
    return _svg(width, height, "submit latency", parts)
