"""The three report formats from one run: schema, junit failures, and an HTML page a real browser renders."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.checkers.compose import check_all
from chaos.report import (
    CanaryMatrix,
    CanaryRow,
    build_report,
    load_json,
    not_applicable_entry,
    scenario_entry,
    undecided_entry,
    write_all,
    write_json,
)

from ..checkers.builder import HistoryBuilder, clean, execution, ledger_task


def _report(tmp_path: Path, histories: dict[str, object]) -> dict:
    entries = []
    for name, history in histories.items():
        path = tmp_path / "histories" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        history.dump(path)
        verdict = check_all(history)
        entries.append(scenario_entry(name, f"{name} scenario", history, verdict, 1.5, [], tmp_path, path,
                                      f"chaos run {name} --seed 7"))
    return build_report(entries, profile="test", seed=7, backend="local", target="t", versions={"celery": "5"},
                        started=0.0, duration=3.0)


def _lost_history():
    b = HistoryBuilder()
    b.task("ok-1", at=0.0)
    b.submit("gone-1", at=0.5)
    b.drain("gone-1", "NOT_FOUND")
    b.fault("kill-worker", "worker-0", 0.6, 2.0)
    b.ledger(ledger_task("ok-1", executions=[execution(0.1, 0.2)]))
    return b.build()


def test_clean_run_passes_in_every_format(tmp_path):
    report = _report(tmp_path, {"clean": clean(5).build()})
    paths = write_all(report, tmp_path)
    data = load_json(paths["json"])
    assert data.schema_ == "celery-chaos/report@1" and data.verdict == "pass" and data.exit_code == 0
    suite = ET.parse(paths["junit"]).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert "PASS" in paths["html"].read_text()


def test_violation_is_visible_in_all_three_formats(tmp_path):
    report = _report(tmp_path, {"clean": clean(3).build(), "broken": _lost_history()})
    paths = write_all(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["verdict"] == "fail" and data["exit_code"] == 1
    broken = next(s for s in data["scenarios"] if s["name"] == "broken")
    assert any(f["checker"] == "lost" and "gone-1" in f["task_ids"] for f in broken["findings"])
    assert broken["faults"][0]["name"] == "kill-worker"
    failure = ET.parse(paths["junit"]).getroot().find("testcase[@name='broken']/failure")
    assert failure is not None and "gone-1" in failure.text and "replay: chaos run broken" in failure.text
    page = paths["html"].read_text()
    assert "FAIL" in page and "gone-1" in page and "kill-worker" in page and "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


@pytest.mark.slow
def test_html_renders_in_a_real_browser(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    report = _report(tmp_path, {"broken": _lost_history()})
    html_path = write_all(report, tmp_path)["html"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True,
                         timeout=60).stdout
    # what the browser built, not the file: the header, a finding, the timeline with its task bars
    assert "celery-chaos gate: FAIL" in dom
    assert "lost / " in dom and "gone-1" in dom
    assert dom.count("<rect") >= 3 and 'aria-label="task timeline"' in dom
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, "--window-size=1000,1400", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 20_000  # a page with content, not a blank one


def test_timeline_and_latency_chart_share_one_time_axis():
    """A fault drawn in the timeline sits at the same x in the latency chart below it."""
    import re

    from chaos.report.html import latency_svg, time_horizon, timeline_svg

    history = _lost_history()
    horizon = time_horizon(history)
    assert horizon >= 2.0  # the fault window (0.6 -> 2.0 s) is inside the axis
    tl, lat = timeline_svg(history, set(), horizon=horizon), latency_svg(history, 100.0, horizon=horizon)
    tick = re.compile(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="(?:middle|end)">([\d.]+)s</text>')
    assert tick.findall(tl) == tick.findall(lat) and len(tick.findall(tl)) == 11
    fault_x = re.compile(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="#[0-9a-f]{6}"')
    assert fault_x.search(tl).groups() == fault_x.search(lat).groups()


DATA = Path(__file__).parent / "data"
SCRIPT = "<script>alert(1)</script>"


def test_a_real_report_round_trips_through_the_model(tmp_path):
    """``run-report.json`` was written by ``chaos run worker-sigkill --target canary:acks-early``: the typed
    model reads every key of it and writes the same JSON back."""
    raw = json.loads((DATA / "run-report.json").read_text())
    report = load_json(DATA / "run-report.json")
    assert report.scenarios[0].findings[0].checker == "lost" and report.scenarios[0].faults[0].node == "worker-0"
    write_json(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == raw


def test_a_built_report_round_trips_with_its_canary_matrix(tmp_path):
    report = _report(tmp_path, {"clean": clean(3).build(), "broken": _lost_history()})
    report.scenarios.append(not_applicable_entry("na", "needs a cancel", "n/a: the target declares no cancel"))
    report.scenarios.append(undecided_entry("bring-up", "the stack did not come up"))
    report.canaries = CanaryMatrix(rows=[CanaryRow(name="canary:x", expected="lost", caught=True, seconds=1.5)],
                                   all_caught=True, reference_passed=True)
    paths = write_all(report, tmp_path)
    raw = json.loads(paths["json"].read_text())
    assert load_json(paths["json"]).to_dict() == raw
    assert raw["canaries"]["rows"][0]["name"] == "canary:x"
    keys = {"name", "description", "verdict", "reasons", "duration_s", "history", "logs", "replay", "faults", "ops",
            "checkers", "findings", "metrics", "errors"}
    assert all(set(s) == keys for s in raw["scenarios"])  # every kind of entry has every key
    assert "canaries" not in json.loads(json.dumps(_report(tmp_path, {"c": clean(1).build()}).to_dict()))


def test_target_strings_are_escaped_in_the_page(tmp_path):
    """Descriptions, findings, task ids, target names and errors come from the target: text, never markup."""
    b = HistoryBuilder()
    b.submit(SCRIPT, at=0.5)
    b.drain(SCRIPT, "NOT_FOUND")
    b.ledger()
    history = b.build()
    path = tmp_path / "histories" / "x.jsonl"
    path.parent.mkdir(parents=True)
    history.dump(path)
    entry = scenario_entry("x", f"a description {SCRIPT}", history, check_all(history), 1.0, [f"error {SCRIPT}"],
                           tmp_path, path, f"chaos run {SCRIPT}")
    entry.findings[0].message = f"message {SCRIPT}"
    report = build_report([entry], profile=SCRIPT, seed=1, backend="local", target=SCRIPT,
                          versions={"celery": SCRIPT}, started=0.0, duration=1.0)
    page = write_all(report, tmp_path)["html"].read_text()
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8  # each field, and the task's bar in the SVG
    assert f"<title>{SCRIPT}" not in page and "<title>&lt;script&gt;alert(1)&lt;/script&gt;: " in page
