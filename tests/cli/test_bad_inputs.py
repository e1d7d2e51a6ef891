"""Every bad input is one sentence and exit 254 (never a traceback, never 1, which means "a violation"); fuzzed
inputs to the commands that start nothing end in {0, 1, 2, 254} and never raise."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.cli import main, read_scenario_file
from chaos.errors import BadArguments
from chaos.target import load_target

from .test_cli import ROOT, chaos

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids,
                                                                                    max_size=4), max_leaves=12)


@pytest.mark.parametrize("content", ["[]", '"str"', '{"name": 1, "plans": 5}', '{"name": "x", "plans": [{}]}',
                                     '{"name": "x", "plans": [{"kind": "no-such-kind"}]}',
                                     '{"name": "x", "plans": [], "schedule": [{"kind": "nuke"}]}', "{not json"])
def test_bad_scenario_files(tmp_path, content):
    f = tmp_path / "s.json"
    f.write_text(content)
    r = chaos("run", "--scenario-file", str(f))
    assert r.returncode == 254, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


@pytest.mark.parametrize("args", [["run", "worker-sigkill", "--workers", "0"], ["up", "--workers", "10000"],
                                  ["run", "property", "--budget", "-5"], ["run", "x", "--seed", "-1"],
                                  ["up", "--workers", "two"]])
def test_out_of_range_numbers(args):
    r = chaos(*args)
    assert r.returncode == 254, r.stderr
    assert "Traceback" not in r.stderr and "out of range" in r.stderr or "not a whole number" in r.stderr


@pytest.mark.parametrize("line", ["[1,2,3]", '"x"', "null", "42", '{"type": "op"}'])
def test_history_lines_that_are_not_events_are_skipped_and_counted(tmp_path, line):
    f = tmp_path / "h.jsonl"
    f.write_text(line + "\n")
    r = chaos("check", str(f))
    assert r.returncode == 254, r.stdout + r.stderr
    assert "skipped" in r.stderr and "Traceback" not in r.stderr


def test_a_report_dir_whose_json_is_not_a_report(tmp_path):
    for content in ("[]", "{}", '{"schema": "celery-chaos/report@1", "scenarios": 3}', "\xff"):
        (tmp_path / "report.json").write_text(content, errors="surrogateescape")
        r = chaos("report", str(tmp_path))
        assert r.returncode == 254, r.stderr
        assert "Traceback" not in r.stderr


@FUZZ
@given(lines=st.lists(json_values.map(json.dumps) | st.text(max_size=30), max_size=6))
def test_fuzzed_history_files(tmp_path_factory, lines):
    f = tmp_path_factory.mktemp("h") / "h.jsonl"
    f.write_text("\n".join(lines), errors="surrogateescape")
    assert main(["check", str(f)]) in (0, 1, 2, 254)


@FUZZ
@given(report=json_values)
def test_fuzzed_report_dirs(tmp_path_factory, report):
    d = tmp_path_factory.mktemp("r")
    (d / "report.json").write_text(json.dumps(report))
    assert main(["report", str(d)]) in (0, 254)


@FUZZ
@given(data=json_values | st.fixed_dictionaries({"name": st.text(max_size=5), "plans": st.lists(json_values,
                                                                                                   max_size=3)}))
def test_fuzzed_scenario_files_are_a_scenario_or_one_sentence(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("s") / "s.json"
    f.write_text(json.dumps(data))
    try:
        read_scenario_file(f, load_target(ROOT / "pyproject.toml"))
    except BadArguments as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(argv=st.lists(st.sampled_from(["check", "report", "canaries", "images", "--json", "--target", "--project",
                                      "--duplicates-allowed", "nope", "/no/such", "-x", "list"])
                     | st.text(string.ascii_letters + "-", max_size=6), max_size=4))
def test_fuzzed_argv_of_commands_that_start_nothing(argv):
    try:
        code = main(["check", *argv]) if argv[:1] != ["canaries"] else main(argv)
    except SystemExit as exc:  # argparse: usage errors
        code = exc.code
    assert code in (0, 1, 2, 254)


def test_scenario_file_written_by_a_run_round_trips(tmp_path):
    from chaos.scenarios import build

    target = load_target(ROOT / "pyproject.toml")
    f = tmp_path / "s.json"
    f.write_text(json.dumps(build("worker-sigkill", target).to_dict()))
    assert read_scenario_file(f, target).name == "worker-sigkill"
    assert Path(f).exists()
