"""Smoke test of ``chaos bench``: the smallest run, then the JSON has every documented key with sane values.

Speed is never asserted: only that each figure exists and is a positive number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from chaos.bench import SCHEMA, run_bench
from chaos.target import load_target


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_quick_writes_every_documented_key(tmp_path: Path) -> None:
    out_file = tmp_path / "bench.json"
    console = Console(file=open(tmp_path / "progress.txt", "w"), width=120)  # noqa: SIM115
    out = Console(file=open(tmp_path / "table.txt", "w"), width=160)  # noqa: SIM115
    rc = run_bench(load_target(), json_out=out_file, quick=True, console=console, out=out,
                   concurrency_levels=(1, 10), memory_tasks=500, throughput_tasks={"noop": 10, "short": 6},
                   worker_counts=(1,), repeats=1, recovery_repeats=1, gate=False, docker=False)
    res = json.loads(out_file.read_text())
    assert rc == 0, res["errors"]
    assert res["errors"] == {}
    assert res["schema"] == SCHEMA and res["quick"] is True
    for key in ("command", "started_at", "wall_s", "machine", "settings", "bring_up", "submit_latency", "submit", "proxy",
                "throughput", "recovery", "redis_memory", "gate", "sections", "section_seconds", "errors"):
        assert key in res, key
    m = res["machine"]
    for key in ("cores", "memory_bytes", "platform", "python", "celery", "kombu", "redis_py", "redis_server"):
        assert m.get(key) not in (None, "", "?"), key
    s = res["settings"]
    for key in ("repeats", "concurrency_levels", "requests_per_level", "sockets_per_level", "throughput_tasks",
                "worker_counts", "worker_concurrency", "memory_tasks", "row_work_ms_short", "bring_up_repeats",
                "kind", "kind_units", "recovery_kind", "noop_env", "unit_ms", "bare_work_ms"):
        assert key in s, key
    # the reference's [tool.celery-chaos.bench] table, as the JSON reports it
    assert s["kind"] == "small" and s["recovery_kind"] == "large" and s["unit_ms"] == s["row_work_ms_short"] == 20
    assert s["bare_work_ms"] == {"noop": 0.0, "short": 100.0} and s["noop_env"]
    assert _positive(res["bring_up"]["local"]["seconds"]) and res["bring_up"]["local"]["workers"] == 2
    assert "skipped" in res["bring_up"]["docker"] and "skipped" in res["gate"]
    for mode in ("celery", "fallback"):
        for level in ("1", "10"):
            v = res["submit_latency"][mode][level]
            assert all(_positive(v[k]) for k in ("p50_ms", "p99_ms", "max_ms", "requests", "sockets")), v
            assert v["p50_ms"] <= v["p99_ms"] <= v["max_ms"]
            assert v["errors"] == 0
    for kind in ("noop", "short"):
        v = res["throughput"][kind]["1"]
        assert all(_positive(v[k]) for k in ("tasks", "api_tasks_per_s", "bare_tasks_per_s", "ratio")), v
    for key in ("worker_sigkill_s", "redis_restart_s", "api_restart_s", "api_kill_to_serving_s"):
        assert _positive(res["recovery"][key]["median"]), key
    assert res["recovery"]["api_kill_to_serving_s"]["median"] >= res["recovery"]["api_restart_s"]["median"]
    for key in ("bulk", "api"):
        v = res["redis_memory"][key]
        assert _positive(v["tasks"]) and _positive(v["before_bytes"]) and _positive(v["after_bytes"]), v
        assert isinstance(v["bytes_per_task"], (int, float)) and math.isfinite(v["bytes_per_task"])
    bulk = res["redis_memory"]["bulk"]
    assert bulk["tasks"] == 500 and bulk["queued_tasks"] == 500 and _positive(bulk["bytes_per_queued_task"])
    assert _positive(bulk["tasks_per_s"])
    assert res["sections"] == ["latency", "submit", "throughput", "memory", "recovery", "proxy", "bring_up"]
    for level in ("10", "100"):  # the submit path and the bare endpoint, loaded alike in the same run
        v = res["submit"][level]
        assert _positive(v["target"]["rps"]) and _positive(v["bare"]["rps"]) and _positive(v["ratio"]), v
        assert v["target"]["p50_ms"] <= v["target"]["p99_ms"], v
    assert res["submit"]["settings"]["generator"] in ("wrk", "client processes")
    for clients in ("1", "50"):  # the fault proxy without toxics, against Redis direct
        v = res["proxy"][clients]
        assert _positive(v["direct_ops_s"]) and _positive(v["proxied_ops_s"]) and _positive(v["ratio"]), v
    assert all(_positive(res["section_seconds"][k]) for k in ("submit_latency.celery", "throughput.noop",
                                                              "redis_memory.bulk", "bring_up.local"))
    assert "chaos bench" in (tmp_path / "table.txt").read_text()


@pytest.mark.slow
def test_bench_only_runs_the_named_sections(tmp_path: Path) -> None:
    out_file = tmp_path / "bench.json"
    console = Console(file=open(tmp_path / "progress.txt", "w"), width=120)  # noqa: SIM115
    rc = run_bench(load_target(), json_out=out_file, quick=True, console=console,
                   out=Console(file=open(tmp_path / "table.txt", "w"), width=160),  # noqa: SIM115
                   only="memory", memory_tasks=300, docker=False)
    res = json.loads(out_file.read_text())
    assert rc == 0, res["errors"]
    assert res["sections"] == ["memory"]
    assert res["submit_latency"] == {} and res["throughput"] == {} and res["recovery"] == {}
    assert res["bring_up"] == {} and "skipped" in res["gate"]
    assert list(res["redis_memory"]) == ["bulk"] and res["redis_memory"]["bulk"]["tasks"] == 300


@pytest.mark.slow
@pytest.mark.docker
def test_docker_bring_up_builds_the_image_when_missing_and_reports_it() -> None:
    from chaos.bench import measure_docker_bring_up

    said: list[str] = []
    res = measure_docker_bring_up(load_target(), 1, said.append, build=True)
    if "no Docker daemon answers" in res.get("skipped", ""):
        pytest.skip(res["skipped"])
    assert "skipped" not in res, res
    assert _positive(res["seconds"]) and res["runs"] == [res["seconds"]] and res["workers"] == 2
    assert res["image"].startswith("celery-chaos-")
    assert res["image_build_s"] is None or _positive(res["image_build_s"])
