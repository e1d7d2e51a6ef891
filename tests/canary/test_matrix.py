"""The canary self-test's matrix lands in report.json and report.html (no cluster: the gate and the detection
are replaced, so this runs in a second)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import chaos.canaries as canaries
import chaos.gate as gate
from chaos.canaries import Detection
from chaos.gate import GateOutcome, Profile
from chaos.report import build_report, write_all

from ..checkers.builder import clean
from ..report.test_report import _report

ROOT = Path(__file__).resolve().parents[2]


class _Quiet:
    def print(self, *args: object, **kw: object) -> None:
        pass


def test_the_matrix_is_written_and_a_miss_fails_the_run(tmp_path, monkeypatch):
    def fake_gate(target, profile, *, report_dir, **kw):
        report = _report(report_dir, {"clean": clean(2).build()})
        return GateOutcome(report, write_all(report, report_dir), [])

    def fake_detect(canary, target, names, **kw):
        det = Detection(canary.target_name, canary.description, canary.expect)
        det.caught = canary.name == "acks-early"
        det.detected_by, det.task_ids = (["lost"], [f"t{i}" for i in range(12)]) if det.caught else ([], [])
        return det

    monkeypatch.setattr(gate, "run_gate", fake_gate)
    monkeypatch.setattr(canaries, "detect", fake_detect)
    args = SimpleNamespace(project=ROOT / "pyproject.toml", backend=None, report=tmp_path)
    code = canaries.run_canaries(args, Profile("default", []), 1, _Quiet(), _Quiet())
    data = json.loads((tmp_path / "report.json").read_text())
    assert code == 1 and data["verdict"] == "fail" and data["exit_code"] == 1  # the reference passed, canaries missed
    matrix = data["canaries"]
    assert matrix["reference_passed"] is True and matrix["all_caught"] is False
    row = next(r for r in matrix["rows"] if r["name"] == "canary:acks-early")
    assert row["caught"] and row["expected"] == "stuck/lost" and len(row["task_ids"]) == 10
    page = (tmp_path / "report.html").read_text()
    assert "Canaries: detection matrix" in page and "CAUGHT" in page and "MISSED" in page


def test_a_report_without_canaries_has_no_matrix(tmp_path):
    report = build_report([], profile="p", seed=1, backend="local", target="t", versions={}, started=0.0,
                          duration=0.0)
    assert "canaries" not in report.to_dict()
    assert "detection matrix" not in write_all(report, tmp_path)["html"].read_text()
