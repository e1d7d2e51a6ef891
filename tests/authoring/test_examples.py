"""The worked examples of "Write your own chaos tests", run as a user runs them: ``python3 -m pytest tests`` in
the example app's directory. The tutorial-style app fails for its real defect (acks early: a SIGKILLed worker
takes its tasks along, so they are stuck), with the plain-words finding and the replay in the output; the
hardened twin passes the same tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


def run_tests(app: str, report: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's chaos (and its pytest plugin), whatever copy of the package is installed
    return subprocess.run([sys.executable, "-m", "pytest", "tests", "-x", "-q", "-p", "no:cacheprovider",
                           "--chaos-report", str(report)], cwd=ROOT / "examples" / app, capture_output=True,
                          text=True, timeout=840, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_tutorial_apps_chaos_tests_fail_for_its_real_defect(tmp_path):
    r = run_tests("tutorial", tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    # -x: the first test, the worker SIGKILL, fails; the finding says in plain words where the tasks went
    assert "FAILED tests/test_chaos.py::test_a_worker_killed_mid_task_loses_nothing" in out, out[-4000:]
    assert ("stuck/stuck: task " in out or "lost/gone: task " in out) and "task_acks_late" in out, out[-4000:]
    replay = next(line for line in out.splitlines() if "replay: " in line)
    assert "chaos run --scenario-file" in replay, replay
    name = "test_chaos.test_a_worker_killed_mid_task_loses_nothing"
    assert (tmp_path / "replay" / f"{name}.json").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"] == "tutorial" and report["verdict"] == "fail"  # the example's own table
    (entry,) = report["scenarios"]
    kinds = {f"{f['checker']}/{f['kind']}" for f in entry["findings"]}
    assert kinds & {"stuck/stuck", "lost/gone"} and kinds <= {"stuck/stuck", "lost/gone", "lost/failed-unexpectedly"}, kinds
    assert [f["name"] for f in entry["faults"]] == ["kill-worker"]
    assert (tmp_path / "junit.xml").is_file() and (tmp_path / "report.html").is_file()


def test_the_hardened_apps_chaos_tests_pass(tmp_path):
    r = run_tests("hardened", tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "3 passed" in out, out[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"] == "hardened" and report["verdict"] == "pass"
    names = [s["name"] for s in report["scenarios"]]
    assert names[:2] == ["test_chaos.test_a_worker_killed_mid_task_loses_nothing",
                         "test_chaos.test_a_redis_restart_mid_task_loses_nothing"]
    assert len(names) >= 3 and all(n.startswith("test_chaos.test_any_task_mix_survives_worker_faults-")
                                   for n in names[2:])  # one scenario per Hypothesis example
    for n in names:
        assert (tmp_path / "histories" / f"{n}.jsonl").is_file(), n
