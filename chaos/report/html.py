"""``report.html``: one self-contained page (inline CSS and SVG, no network) that a person grasps at a glance.

A summary, then per scenario: its verdict and findings with the replay command, a timeline of every task's life
(submit to terminal, executions from the ledger or the worker probe inside it) with the fault windows shaded, and
submit latency over time against the threshold.

The page is a Jinja template (``templates/report.html.j2``) with autoescape on: descriptions, findings, task
ids and errors come from the target and must not become markup. The pictures are :mod:`chaos.report.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from chaos.history import History
from chaos.report.charts import COLORS, FAULT_FILL, latency_svg, time_horizon, timeline_svg
from chaos.report.model import NOT_APPLICABLE, Report, ScenarioEntry

__all__ = ["latency_svg", "render_html", "time_horizon", "timeline_svg", "write_html"]

VERDICT_STYLE = {"pass": ("PASS", "#2e9e5b"), "fail": ("FAIL", "#d62f2f"), "unknown": ("UNDECIDED", "#e08a1e"),
                 NOT_APPLICABLE: ("N/A", "#98a2b3")}


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("chaos.report", "templates"),
                       autoescape=True,  # every value from the report is text
                       undefined=StrictUndefined)


@dataclass
class _Section:
    entry: ScenarioEntry
    timeline: Markup | None = None
    latency: Markup | None = None


def _section(s: ScenarioEntry, report_dir: Path, threshold_ms: float) -> _Section:
    hist = report_dir / s.history if s.history else None
    if hist is None or not hist.exists():
        return _Section(s)
    history = History.load(hist)
    horizon = time_horizon(history)
    return _Section(s, timeline_svg(history, s.bad_tasks, horizon=horizon),
                    latency_svg(history, threshold_ms, horizon=horizon))


def render_html(report: Report, report_dir: Path, threshold_ms: float = 100.0) -> str:
    abstained = sorted({r for s in report.scenarios if s.verdict != NOT_APPLICABLE for r in s.reasons
                        if " n/a: " in r})
    sections = [_section(s, report_dir, threshold_ms) for s in report.scenarios]
    return _environment().get_template("report.html.j2").render(
        report=report, sections=sections, abstained=abstained, styles=VERDICT_STYLE, colors=COLORS,
        fault_fill=FAULT_FILL)


def write_html(report: Report, report_dir: Path, threshold_ms: float = 100.0) -> Path:
    path = report_dir / "report.html"
    path.write_text(render_html(report, report_dir, threshold_ms))
    return path
