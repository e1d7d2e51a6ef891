"""The ``[tool.celery-chaos.bench]`` table: resolved against the target's kinds; a bad table is one sentence.

Nothing here starts a process (a bad table is refused before any cluster comes up), except the CLI test, which
only runs ``chaos bench`` up to its argument check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos.bench import BENCH_TABLE, load_bench_config, plan, run_bench
from chaos.errors import BadArguments
from chaos.target import load_target, target_from_table

ROOT = Path(__file__).resolve().parents[2]

# A target written the way tutorials write one: no ledger, no health, no priority, fail-fast.
PLAIN = {
    "name": "plain",
    "api": "{python} -m uvicorn app:app --host {host} --port {port}",
    "worker": "{python} -m celery -A app worker --hostname={name}@%h",
    "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}"},
    "kinds": [{"name": "long", "body": {"n": 10}, "units": 10}, {"name": "quick", "body": {"n": 1}, "units": 1},
              {"name": "broken", "body": {"n": -1}, "expect": "FAILURE"}],
}

PYPROJECT = """\
[tool.celery-chaos.target]
name = "plain"
api = "{python} -m uvicorn app:app --host {host} --port {port}"
worker = "{python} -m celery -A app worker --hostname={name}@%h"

[tool.celery-chaos.target.http]
submit_path = "/tasks"
status_path = "/tasks/{task_id}"

[[tool.celery-chaos.target.kinds]]
name = "quick"
body = { n = 1 }
"""


def _one_sentence(msg: str) -> None:
    assert msg and "\n" not in msg and "validation error" not in msg and "Traceback" not in msg, msg
    assert msg.startswith(BENCH_TABLE), msg


def _refused(table: Any, target: Any = None) -> str:
    with pytest.raises(BadArguments) as exc:
        plan(target or load_target(ROOT / "pyproject.toml"), table)
    msg = str(exc.value)
    _one_sentence(msg)
    return msg


def test_the_reference_table_resolves_to_its_kinds() -> None:
    bp = plan(load_target(ROOT / "pyproject.toml"), load_bench_config(ROOT / "pyproject.toml"))
    assert (bp.kind.name, bp.recovery_kind.name, bp.unit_ms) == ("small", "large", 20)
    assert bp.short_work_s == pytest.approx(bp.kind.units * 20 / 1000) and bp.noop_env
    assert bp.noop_skipped is None and bp.short_bare_skipped is None


def test_an_unknown_key_is_one_sentence_with_a_suggestion() -> None:
    assert _refused({"knd": "small"}) == f"{BENCH_TABLE}: unknown key 'knd' (did you mean 'kind'?)"
    assert "unknown key 'rows'" in _refused({"rows": 5})


def test_an_unknown_or_failing_kind_is_one_sentence() -> None:
    msg = _refused({"kind": "smal"})
    assert "no task kind 'smal'" in msg and "did you mean 'small'?" in msg
    msg = _refused({"recovery_kind": "zzz"})
    assert "recovery_kind" in msg and "no task kind 'zzz'" in msg and "'small'" in msg  # lists what there is
    assert "expected to fail" in _refused({"kind": "poison"})


def test_a_bad_value_or_shape_is_one_sentence() -> None:
    assert "unit_ms" in _refused({"unit_ms": -1})
    assert "noop_env" in _refused({"noop_env": "ROW=0"})
    assert "must be a table" in _refused(["kind"])


def test_without_a_table_the_defaults_come_from_the_target() -> None:
    bp = plan(target_from_table(PLAIN, ROOT), None)
    assert (bp.kind.name, bp.recovery_kind.name) == ("quick", "long")  # shortest and longest that succeed
    assert bp.noop_env == {} and bp.unit_ms is None and bp.short_work_s is None
    assert bp.noop_skipped and "noop_env" in bp.noop_skipped
    assert bp.short_bare_skipped and "unit_ms" in bp.short_bare_skipped
    s = bp.settings()
    assert s["bare_work_ms"] == {"noop": None, "short": None} and s["unit_ms"] is s["row_work_ms_short"] is None


def test_run_bench_refuses_a_bad_table_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT + "\n[tool.celery-chaos.bench]\nkind = \"slow\"\n")
    with pytest.raises(BadArguments, match="no task kind 'slow'"):
        run_bench(load_target(tmp_path / "pyproject.toml"), docker=False)
    with pytest.raises(BadArguments, match="unknown key 'unit'"):
        run_bench(load_target(tmp_path / "pyproject.toml"), bench={"unit": 3}, docker=False)


def test_a_target_without_http_api_is_refused_for_the_submitting_sections(tmp_path: Path) -> None:
    celery_only = {**{k: v for k, v in PLAIN.items() if k not in ("api", "http")}, "client": "celery",
                   "kinds": [{"name": "quick", "task": "app.quick"}]}
    with pytest.raises(BadArguments, match="HTTP API") as exc:
        run_bench(target_from_table(celery_only, tmp_path), only="latency,memory", docker=False)
    assert "\n" not in str(exc.value)


def test_cli_exits_254_with_one_sentence_on_a_bad_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT + "\n[tool.celery-chaos.bench]\nkindd = \"quick\"\n")
    r = subprocess.run([sys.executable, "-m", "chaos.cli", "bench", "--project", str(tmp_path / "pyproject.toml"),
                        "--quick"], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert r.returncode == 254, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "unknown key 'kindd' (did you mean 'kind'?)" in r.stderr, r.stderr


class _FakeCluster:
    api_url = "http://127.0.0.1:1"

    def __init__(self, target: Any) -> None:
        self.target = target


def test_bodies_come_from_the_kind_and_priority_only_when_declared(tmp_path: Path) -> None:
    from chaos.bench import TargetApi

    plain = target_from_table(PLAIN, tmp_path)
    api = TargetApi(_FakeCluster(plain), plan(plain))
    assert api.body() == {"n": 1} and api.auth == {} and not api.has_ledger
    api.close()
    ranked = target_from_table({**PLAIN, "http": {**PLAIN["http"], "priority_field": "prio", "token": "t"}},
                               tmp_path)
    api = TargetApi(_FakeCluster(ranked), plan(ranked, {"kind": "long"}))
    assert api.body() == {"n": 10, "prio": 5} and api.auth == {"Authorization": "Bearer t"}
    api.close()


def test_without_a_ledger_the_end_is_when_status_reads_see_the_last_task_finish(tmp_path: Path) -> None:
    import httpx

    from chaos.bench import TargetApi

    plain = target_from_table({**PLAIN, "http": {**PLAIN["http"], "statuses": {"SUCCESS": ["done"]}}}, tmp_path)
    reads: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        tid = request.url.path.rsplit("/", 1)[1]
        reads.append(tid)
        done = reads.count(tid) >= (3 if tid == "b" else 1)  # "b" needs three reads to be seen done
        return httpx.Response(200, json={"status": "done" if done else "STARTED"})

    api = TargetApi(_FakeCluster(plain), plan(plain))
    api.client = httpx.Client(transport=httpx.MockTransport(answer))
    try:
        end = api.finished_at(["a", "b", "c"], since=0.0, timeout=10)
    finally:
        api.close()
    assert end > 0 and reads == ["a", "b", "b", "b", "c"]  # in submission order, the oldest unfinished first
