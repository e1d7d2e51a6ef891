"""Reports: report.json (the source of truth), junit.xml and a self-contained report.html, all from one run."""

from __future__ import annotations

from pathlib import Path

from chaos.report.entries import build_report, not_applicable_entry, scenario_entry, undecided_entry
from chaos.report.html import write_html
from chaos.report.junit import write_junit
from chaos.report.model import CanaryMatrix, CanaryRow, Report, ScenarioEntry, load_json, write_json

__all__ = ["CanaryMatrix", "CanaryRow", "Report", "ScenarioEntry", "build_report", "load_json",
           "not_applicable_entry", "scenario_entry", "undecided_entry", "write_all", "write_json"]


def write_all(report: Report, report_dir: Path, threshold_ms: float = 100.0) -> dict[str, Path]:
    """Write the three formats into ``report_dir``; returns their paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": report_dir / "report.json", "junit": report_dir / "junit.xml"}
    write_json(report, paths["json"])
    write_junit(report, paths["junit"])
    paths["html"] = write_html(report, report_dir, threshold_ms)
    return paths
