"""The pytest side of the authoring API, in pytest runs of their own: the ``chaos`` fixture, the assertion
message of a failing test, ``--chaos-report`` (histories, replay files, report.html / report.json / junit.xml),
and which ``pyproject.toml`` the target comes from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TARGET_TABLE = """
[tool.celery-chaos.target]
name = "{name}"
api = "unused"
worker = "unused"
[tool.celery-chaos.target.http]
submit_path = "/tasks"
status_path = "/tasks/{{task_id}}"
[[tool.celery-chaos.target.kinds]]
name = "short"
"""

CONFTEST = """
import pytest

from tests.authoring.fakes import FakeCluster, fake_target


@pytest.fixture(scope="session")
def chaos_target():
    return fake_target()


@pytest.fixture
def chaos_cluster(chaos_target):
    c = FakeCluster(chaos_target)
    yield c
    c.close()
"""

TESTS = """
def test_passes(chaos):
    ids = [chaos.submit("short") for _ in range(3)]
    chaos.quiesce()
    chaos.verdict().assert_ok()


def test_fails(chaos):
    chaos.submit("stuck")
    with chaos.fault("pause-redis"):
        chaos.submit("short")
    chaos.verdict().assert_ok()


def test_without_a_verdict(chaos):
    chaos.wait_for(chaos.submit("short"), timeout=3)
"""


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_fixture_a_failing_message_and_the_report(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--strict-markers'\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mine.py").write_text(TESTS)
    report = tmp_path / "out"
    r = pytest_run(tmp_path, "test_mine.py", "--chaos-report", str(report), "--chaos-seed", "11", "-m", "chaos")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 2 passed" in out, out
    # the assertion message: the finding in plain words, then the one replay command
    assert "AssertionError: chaos verdict for test_mine.test_fails: FAIL" in out
    assert "stuck/stuck: task " in out and "still PENDING" in out
    assert "replay: chaos run --scenario-file out/replay/test_mine.test_fails.json" in out
    assert f"celery-chaos: fail; report: {report / 'report.html'}" in out
    # one history per test, a replay file per test, and the gate's three reports
    names = ["test_mine.test_passes", "test_mine.test_fails", "test_mine.test_without_a_verdict"]
    for n in names:
        assert (report / "histories" / f"{n}.jsonl").is_file(), n
        assert (report / "replay" / f"{n}.json").is_file(), n
    data = json.loads((report / "report.json").read_text())
    assert data["verdict"] == "fail" and data["exit_code"] == 1 and data["seed"] == 11
    assert data["profile"] == "pytest" and data["target"] == "fake"
    by = {s["name"]: s for s in data["scenarios"]}
    assert set(by) == set(names)
    assert by["test_mine.test_passes"]["verdict"] == "pass"
    assert by["test_mine.test_without_a_verdict"]["verdict"] == "pass"  # judged at the end of the test
    assert by["test_mine.test_fails"]["verdict"] == "fail"
    assert [f["name"] for f in by["test_mine.test_fails"]["faults"]] == ["pause-redis"]
    assert by["test_mine.test_fails"]["description"] == "test_mine.py::test_fails"
    junit = (report / "junit.xml").read_text()
    assert 'failures="1"' in junit and "stuck/stuck" in junit
    assert (report / "report.html").read_text().count("test_mine.test_") >= 3


def test_without_a_report_the_replay_says_how_to_rerun(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mine.py").write_text(TESTS)
    r = pytest_run(tmp_path, "test_mine.py::test_fails", "--chaos-seed", "3")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "replay: python3 -m pytest 'test_mine.py::test_fails' --chaos-seed 3" in out
    assert not (tmp_path / "out").exists()


SHOW_TARGET = """
def test_target(chaos_target):
    print("TARGET=" + chaos_target.name)
"""


def test_the_target_comes_from_the_nearest_table_above_the_tests(tmp_path):
    """A parent pyproject.toml with pytest's configuration (the rootdir) does not hide an app's own table."""
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n" + TARGET_TABLE.format(name="root"))
    app = tmp_path / "examples" / "app"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text("[project]\nname = 'app'\n" + TARGET_TABLE.format(name="app"))
    (app / "tests" / "test_t.py").write_text(SHOW_TARGET)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_root.py").write_text(SHOW_TARGET)
    (tmp_path / "plain").mkdir()  # a project without a table of its own: the rootdir's
    (tmp_path / "plain" / "pyproject.toml").write_text("[project]\nname = 'plain'\n")
    (tmp_path / "plain" / "test_p.py").write_text(SHOW_TARGET)

    def target(cwd: Path, *args: str) -> str:
        r = pytest_run(cwd, "-s", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        return next(line for line in r.stdout.splitlines() if "TARGET=" in line).split("TARGET=")[1].strip(".")

    assert target(app, "tests") == "app"  # cd examples/app && pytest tests
    assert target(tmp_path, "examples/app/tests") == "app"
    assert target(tmp_path, "tests") == "root"
    assert target(tmp_path, "plain") == "root"
    assert target(app, "tests", "--chaos-project", str(tmp_path / "pyproject.toml")) == "root"


def test_the_repository_conftest_loads_the_plugin_once():
    """Installed, the entry point registers the plugin and the root conftest.py leaves it be (a second
    registration is an error); with plugin autoload off the conftest loads it; ``-p no:celery_chaos`` wins."""
    args = ("--collect-only", "tests/gate/test_profiles.py", "--chaos-seed", "3")
    assert pytest_run(ROOT, *args).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = pytest_run(ROOT, "-p", "no:celery_chaos", *args)
    assert r.returncode != 0 and "--chaos-seed" in r.stderr, r.stdout + r.stderr
