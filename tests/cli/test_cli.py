"""The ``chaos`` command's contract: exit codes and one-sentence errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..checkers.builder import clean

ROOT = Path(__file__).resolve().parents[2]


def chaos(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("args", [["gate", "--profile", "nope"], ["run", "no-such-scenario"], ["bogus"],
                                  ["run"], ["check", "/no/such/file.jsonl"], ["gate", "--target", "nope"],
                                  ["bench", "--only", "latency,bogus"], ["bench", "--memory-tasks", "0"]])
def test_bad_arguments_exit_254_with_one_sentence(args):
    r = chaos(*args)
    assert r.returncode == 254, r.stderr
    assert "Traceback" not in r.stderr and "chaos" in r.stderr


def test_check_exit_codes_follow_the_verdict(tmp_path):
    good = tmp_path / "good.jsonl"
    clean(25).build().dump(good)
    r = chaos("check", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.jsonl"
    b = clean(3)
    b.submit("lost-1", at=5.0)
    b.drain("lost-1", "NOT_FOUND")
    b.build().dump(bad)
    r = chaos("check", str(bad))
    assert r.returncode == 1 and "lost-1" in r.stdout


def test_missing_redis_server_is_one_sentence_and_exit_2(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    r = chaos("run", "submit-status-cancel", "--report", str(tmp_path / "rep"), env={"PATH": str(bindir)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "redis-server was not found" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_no_project_table_is_a_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    r = chaos("run", "worker-sigkill", cwd=tmp_path)
    assert r.returncode == 254 and "no [tool.celery-chaos] table" in r.stderr


def test_unreadable_scenario_file_is_a_bad_argument(tmp_path):
    bad = tmp_path / "scenario.json"
    bad.write_text("{not json")
    r = chaos("run", "--scenario-file", str(bad))
    assert r.returncode == 254 and "cannot read scenario file" in r.stderr


def test_run_list_names_every_scenario():
    from chaos.scenarios import SCENARIOS

    r = chaos("run", "list")
    assert r.returncode == 0
    assert all(name in r.stdout for name in SCENARIOS)


def test_canaries_are_listed():
    r = chaos("canaries")
    assert r.returncode == 0 and "canary:acks-early" in r.stdout and "canary:no-broker-retry" in r.stdout
