"""The bench's table on the terminal, rendered from the JSON result (so both always say the same)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.table import Table

OPS_LABEL = "SET+GET"



def pair_range(row: Mapping[str, Any]) -> str:
    """' (pairs 0.71-0.83)': the spread of a level's per-pair ratios, '' for one pair (or rows of older runs)."""
    rs = row.get("ratio_runs") or []
    return f" (pairs {min(rs):.3f}-{max(rs):.3f})" if len(rs) > 1 else ""


def _case_rows(t: Table, measure: str, section: Mapping[str, Any],
               row: Callable[[str, Mapping[str, Any]], tuple[str, str]]) -> None:
    """A section's table rows: one per numbered case (a level, a client count), or its skip reason."""
    if "skipped" in section:
        t.add_row(measure, "", f"skipped: {section['skipped']}")
    for n, v in section.items():
        if n.isdigit():
            t.add_row(measure, *row(n, v))


def render_table(res: dict[str, Any]) -> Table:
    t = Table(title=f"chaos bench{' --quick' if res.get('quick') else ''} (medians)")
    t.add_column("measure")
    t.add_column("case")
    t.add_column("value", justify="right")
    for mode, levels in res.get("submit_latency", {}).items():
        if "skipped" in levels:
            t.add_row(f"submit latency, {mode}", "", f"skipped: {levels['skipped']}")
            continue
        for lv, v in levels.items():
            t.add_row(f"submit latency, {mode}", f"{lv} concurrent ({v['sockets']} sockets)",
                      f"p50 {v['p50_ms']:.1f} / p99 {v['p99_ms']:.1f} / max {v['max_ms']:.1f} ms"
                      + (f", {v['errors']} errors" if v["errors"] else ""))
    for kind, by_w in res.get("throughput", {}).items():
        if "skipped" in by_w:
            t.add_row(f"throughput, {kind}", "", f"skipped: {by_w['skipped']}")
            continue
        for w, v in by_w.items():
            bare = (f"bare {v['bare_tasks_per_s']:.1f}/s, ratio {v['ratio']:.2f}" if v.get("ratio") is not None
                    else "bare skipped, ratio n/a")
            t.add_row(f"throughput, {kind}", f"{w} worker(s) x{res['settings']['worker_concurrency']}, "
                      f"{v['tasks']} tasks", f"api {v['api_tasks_per_s']:.1f}/s, {bare}")
    labels = {"worker_sigkill_s": "worker SIGKILL -> task running again",
              "redis_restart_s": "Redis start -> a new task done on a worker",
              "api_restart_s": "API start -> serving", "api_kill_to_serving_s": "API SIGKILL -> serving"}
    for k, v in res.get("recovery", {}).items():
        t.add_row("recovery", labels.get(k, k), f"skipped: {v['skipped']}" if "skipped" in v else f"{v['median']:.2f} s")
    for k, v in res.get("redis_memory", {}).items():
        t.add_row("Redis used_memory", f"{k}: {v['tasks']:,} tasks finished",
                  f"{v['before_bytes'] / 2**20:.2f} -> {v['after_bytes'] / 2**20:.2f} MiB, "
                  f"{v['bytes_per_task']:.1f} B/task kept")
        if "queued_tasks" in v:
            t.add_row("Redis used_memory", f"{k}: {v['queued_tasks']:,} tasks queued",
                      f"{v['queued_bytes'] / 2**20:.2f} MiB, {v['bytes_per_queued_task']:.0f} B/queued task")
    sub = res.get("submit") or {}
    _case_rows(t, "submit path vs bare endpoint", sub, lambda n, v: (
        f"{n} connections ({sub['settings']['generator']})",
        f"target {v['target']['rps']:.0f} req/s, p50 {v['target']['p50_ms']} / p99 {v['target']['p99_ms']} ms; "
        f"bare {v['bare']['rps']:.0f} req/s, p99 {v['bare']['p99_ms']} ms; ratio {v['ratio']}{pair_range(v)}"))
    _case_rows(t, "fault proxy, no toxics", res.get("proxy") or {}, lambda n, v: (
        f"redis-benchmark {n} client(s), {OPS_LABEL}",
        f"direct {v['direct_ops_s']:,} / proxied {v['proxied_ops_s']:,} ops/s, ratio {v['ratio']:.2f}"))
    for k, v in res.get("bring_up", {}).items():
        if "seconds" not in v:
            t.add_row("bring-up", k, f"skipped: {v['skipped']}")
            continue
        built = f" (image built first: {v['image_build_s']:.0f} s)" if v.get("image_build_s") else ""
        t.add_row("bring-up", f"{k}, {v['workers']} workers", f"{v['seconds']:.1f} s{built}")
    g = res.get("gate", {})
    if g:
        t.add_row("gate wall time", "default profile",
                  f"{g['wall_s']:.0f} s (exit {g['exit_code']})" if "wall_s" in g else f"skipped: {g['skipped']}")
    for k, v in res.get("errors", {}).items():
        t.add_row("error", k, v)
    return t
