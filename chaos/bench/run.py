"""One ``chaos bench`` run: which sections, on which clusters, in which order, into one JSON result and a table.

``BenchOptions`` is what the caller chose (None: the default ``quick`` picks); ``run_bench`` checks it before
anything starts, then runs cluster A (no-op work), S (no workers), B (the target's own env) and the sections
that need no cluster of their own (proxy, bring-up, gate). A section that fails is an error in the JSON, never
an exception: the other sections still run.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from chaos.bench.api import TargetApi
from chaos.bench.bare import BareWorkers
from chaos.bench.broker import drain
from chaos.bench.config import BenchConfig, BenchPlan, plan, project_plan
from chaos.bench.figures import rounded
from chaos.bench.latency import MAX_SOCKETS, measure_fallback_latency, measure_latency, requests_per_client
from chaos.bench.machine import machine_info
from chaos.bench.memory import measure_bulk_memory, used_memory
from chaos.bench.recovery import measure_recovery
from chaos.bench.table import render_table
from chaos.bench.throughput import measure_throughput
from chaos.bench.wall_times import measure_bring_up, measure_docker_bring_up, measure_gate_wall
from chaos.errors import BadArguments, ChaosError
from chaos.target import Target

SCHEMA = "celery-chaos-bench/1"
SUBMITTING = ("latency", "submit", "throughput", "memory", "recovery")  # the sections that need the target's HTTP API
SUBMIT_LEVELS = (10, 100)  # concurrent connections of the submit section (the plan's 10 and 100)
SECTIONS = ("latency", "submit", "throughput", "memory", "recovery", "proxy", "bring_up", "gate")


def _defaults(quick: bool) -> dict[str, Any]:
    return {"repeats": 1 if quick else 3, "concurrency_levels": (1, 10, 100) if quick else (1, 10, 100, 1000),
            "throughput_tasks": {"noop": 200, "short": 40} if quick else {"noop": 2000, "short": 100},
            "worker_counts": (1, 4), "memory_tasks": 2000 if quick else 20_000,
            "recovery_repeats": 1 if quick else 3, "bring_up_repeats": 1 if quick else 3}


def parse_sections(only: Iterable[str] | str | None) -> list[str]:
    """``--only latency,memory`` -> the sections in run order; unknown names are a usage error."""
    if only is None:
        return list(SECTIONS)
    parts = [only] if isinstance(only, str) else list(only)
    names = [name.strip().replace("-", "_") for part in parts for name in part.split(",") if name.strip()]
    bad = [x for x in names if x not in SECTIONS]
    if bad or not names:
        raise BadArguments(f"unknown bench section(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                           f"choose from {', '.join(SECTIONS)}")
    return [x for x in SECTIONS if x in names]


@dataclass(frozen=True)
class BenchOptions:
    """What a bench run measures and how often. None: the default, which ``quick`` picks (``_defaults``).

    ``only`` limits the run to some of ``SECTIONS`` (default: all; ``quick`` leaves out the gate unless named or
    ``gate`` is True). ``bench`` is the ``[tool.celery-chaos.bench]`` table (default: read from the target's
    pyproject). ``backend`` other than local is only brought up for its bring-up time.
    """

    backend: str = "local"
    json_out: Path | None = None
    quick: bool = False
    only: Iterable[str] | str | None = None
    gate: bool | None = None
    docker: bool = True
    concurrency_levels: Iterable[int] | None = None
    memory_tasks: int | None = None
    throughput_tasks: dict[str, int] | None = None
    worker_counts: Iterable[int] | None = None
    repeats: int | None = None
    recovery_repeats: int | None = None
    bring_up_repeats: int | None = None
    bench: Mapping[str, Any] | BenchConfig | None = None

    def sections(self) -> list[str]:
        """The sections to run, in run order (a usage error for an unknown name)."""
        wanted = parse_sections(self.only)
        if self.only is None and (self.quick if self.gate is None else not self.gate):
            wanted.remove("gate")
        elif self.gate is True and "gate" not in wanted:
            wanted.append("gate")
        return wanted


class _Run:
    """One run's state: the resolved settings, the result being filled in, and the section bookkeeping."""

    def __init__(self, target: Target, opts: BenchOptions, wanted: list[str], bp: BenchPlan,
                 console: Console) -> None:
        self.target, self.opts, self.wanted, self.bp, self.console = target, opts, wanted, bp, console
        d = _defaults(opts.quick)
        self.levels = list(opts.concurrency_levels or d["concurrency_levels"])
        self.reps = opts.repeats or d["repeats"]
        self.rec_reps = opts.recovery_repeats or d["recovery_repeats"]
        self.up_reps = opts.bring_up_repeats or d["bring_up_repeats"]
        self.tput_n = {**d["throughput_tasks"], **(opts.throughput_tasks or {})}
        self.wcounts = list(opts.worker_counts or d["worker_counts"])
        self.mem_n = opts.memory_tasks or d["memory_tasks"]
        quick, levels = opts.quick, self.levels
        self.res: dict[str, Any] = {
            "schema": SCHEMA, "quick": quick, "sections": wanted,
            "command": shlex.join(["chaos", *sys.argv[1:]]) if sys.argv else "chaos bench",
            "started_at": rounded(time.time(), 3), "machine": machine_info(),
            "settings": {"repeats": self.reps, "recovery_repeats": self.rec_reps, "bring_up_repeats": self.up_reps,
                         "concurrency_levels": levels,
                         "requests_per_level": {str(lv): lv * requests_per_client(lv, quick) for lv in levels},
                         "sockets_per_level": {str(lv): min(lv, MAX_SOCKETS) for lv in levels},
                         "throughput_tasks": self.tput_n, "worker_counts": self.wcounts,
                         "worker_concurrency": target.worker_concurrency, "memory_tasks": self.mem_n,
                         **bp.settings()},
            "bring_up": {}, "submit_latency": {}, "submit": {}, "throughput": {}, "recovery": {}, "redis_memory": {},
            "proxy": {}, "gate": {}, "section_seconds": {}, "errors": {},
        }
        self.errors: dict[str, str] = self.res["errors"]
        self.timings: dict[str, float] = self.res["section_seconds"]

    def say(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False)

    def section(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, timed; a failure is written down as the section's error and gives None."""
        t0 = time.monotonic()
        try:
            return fn()
        except (ChaosError, TimeoutError, httpx.HTTPError, OSError, AssertionError) as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            self.say(f"    {name}: could not measure: {exc}")
            return None
        finally:
            self.timings[name] = rounded(self.timings.get(name, 0.0) + time.monotonic() - t0, 1)

    # ---- cluster A: no-op-ish tasks ---------------------------------------------------------------------------
    def cluster_a(self, tmp: Path) -> None:
        from chaos.cluster.cluster import Cluster

        bp, wanted, res, say, section = self.bp, self.wanted, self.res, self.say, self.section
        levels, reps, quick = self.levels, self.reps, self.opts.quick
        env_a = ", ".join(f"{k}={v}" for k, v in bp.noop_env.items()) or "the target's own env: no noop_env"
        say(f"bench: cluster A ({env_a}, 1 worker) on local ...")
        with Cluster(self.target, backend="local", workers=1, env=bp.noop_env or None) as c:
            redis_node = c.redis
            assert redis_node is not None
            res["machine"] = machine_info(redis_node.client())
            api = TargetApi(c, bp)
            bare = BareWorkers(c, tmp / "bare-a")
            try:
                rc = redis_node.client(timeout=5.0)
                m0 = used_memory(rc)
                if "latency" in wanted:
                    say("  submit latency, celery mode")
                    lat = section("submit_latency.celery",
                                  lambda: measure_latency(api, levels, reps, quick, say, "celery"))
                    if lat:
                        res["submit_latency"]["celery"] = lat
                if "throughput" in wanted and bp.noop_skipped:
                    res["throughput"]["noop"] = {"skipped": bp.noop_skipped}
                    say(f"  throughput, no-op tasks: skipped ({bp.noop_skipped})")
                elif "throughput" in wanted:
                    say(f"  throughput, no-op tasks ({bp.kind.name!r})")
                    tp = section("throughput.noop", lambda: measure_throughput(
                        c, api, bare, self.tput_n["noop"], 0.0, self.wcounts, reps, say, "no-op"))
                    if tp:
                        res["throughput"]["noop"] = tp
                if "memory" in wanted:
                    c.set_worker_count(1)
                    section("drain", lambda: drain(c, api))
                    m1 = used_memory(rc)
                    n_api, n_bare = api.accepted, bare.sent
                    if n_api + n_bare:
                        res["redis_memory"]["api"] = {
                            "tasks": n_api + n_bare, "via": f"{n_api} through the API + {n_bare} bare (the "
                                                          "latency and throughput phases)",
                            "before_bytes": m0, "after_bytes": m1,
                            "bytes_per_task": rounded((m1 - m0) / (n_api + n_bare), 3)}
                    say(f"  redis memory, {self.mem_n} tasks")
                    c.set_worker_count(0)
                    bulk = section("redis_memory.bulk", lambda: measure_bulk_memory(c, bare, self.mem_n, say))
                    if bulk:
                        res["redis_memory"]["bulk"] = bulk
                    c.set_worker_count(1)
                rc.close()
                if "latency" in wanted:
                    say("  submit latency, fallback mode (Redis stopped)")
                    lat = section("submit_latency.fallback",
                                  lambda: measure_fallback_latency(c, api, levels, reps, quick, say))
                    if lat and "skipped" in lat:
                        say(f"    skipped: {lat['skipped']}")
                    if lat:
                        res["submit_latency"]["fallback"] = lat
            finally:
                bare.close()
                api.close()

    # ---- cluster S: the submit path against a bare endpoint ---------------------------------------------------
    def cluster_s(self, tmp: Path) -> None:
        from chaos.bench.submit import generator, measure_submit
        from chaos.cluster.cluster import Cluster

        quick = self.opts.quick
        self.say(f"bench: cluster S (the target's own env, no workers: tasks only queue); load by {generator()} ...")
        with Cluster(self.target, backend="local", workers=0) as c:
            api = TargetApi(c, self.bp)
            try:
                self.res["submit"] = self.section("submit", lambda: measure_submit(
                    api.url + api.http.submit_path, api.http.submit_method, api.body(), api.auth,
                    c.link_url("api_redis"), api.http.token, tmp / "submit", levels=SUBMIT_LEVELS,
                    seconds=3.0 if quick else 5.0, repeats=1 if quick else 5, say=self.say)) or {"skipped": "failed"}
            finally:
                api.close()

    # ---- cluster B: short tasks and recovery ------------------------------------------------------------------
    def cluster_b(self, tmp: Path) -> None:
        from chaos.cluster.cluster import Cluster

        bp, say = self.bp, self.say
        say("bench: cluster B (the target's own env, 1 worker) on local ...")
        with Cluster(self.target, backend="local", workers=1) as c:
            api = TargetApi(c, bp)
            bare = BareWorkers(c, tmp / "bare-b")
            try:
                if "throughput" in self.wanted:
                    work = "unknown" if bp.short_work_s is None else f"{bp.short_work_s * 1000:.0f} ms"
                    say(f"  throughput, short tasks ({bp.kind.name!r}, bare task {work})")
                    tp = self.section("throughput.short", lambda: measure_throughput(
                        c, api, bare, self.tput_n["short"], bp.short_work_s, self.wcounts, self.reps, say, "short",
                        bp.short_bare_skipped))
                    if tp:
                        self.res["throughput"]["short"] = tp
                if "recovery" in self.wanted:
                    c.set_worker_count(2)
                    self.section("drain", lambda: drain(c, api))
                    say("  recovery (2 workers)")
                    self.res["recovery"] = measure_recovery(c, api, self.rec_reps, self.section, say)
            finally:
                bare.close()
                api.close()

    # ---- the fault proxy, bring-up, gate ----------------------------------------------------------------------
    def proxy(self) -> None:
        from chaos.bench.proxy import measure_proxy

        quick = self.opts.quick
        self.say("bench: the fault proxy on a Redis link without toxics (redis-benchmark, direct vs proxied) ...")
        self.res["proxy"] = self.section("proxy", lambda: measure_proxy(
            requests=10_000 if quick else 50_000, repeats=1 if quick else 3)) or {"skipped": "failed"}

    def bring_up(self) -> None:
        target, up_reps, section, ups = self.target, self.up_reps, self.section, self.res["bring_up"]
        self.say(f"bench: bring-up of each backend (2 workers, {up_reps} run(s) each) ...")
        ups["local"] = section("bring_up.local", lambda: measure_bring_up(target, "local", up_reps))
        if self.opts.docker:
            ups["docker"] = section("bring_up.docker", lambda: measure_docker_bring_up(
                target, up_reps, self.say, build=not self.opts.quick))
        else:
            ups["docker"] = {"skipped": "not requested"}
        for k, v in ups.items():
            if v and "seconds" in v:
                self.say(f"    {k}: {v['seconds']:.2f}s (runs {v['runs']})")
        self.res["bring_up"] = {k: v for k, v in ups.items() if v}

    def gate(self, tmp: Path) -> None:
        if "gate" in self.wanted:
            self.say("bench: the default gate profile ...")
            self.res["gate"] = self.section("gate", lambda: measure_gate_wall(self.target, tmp / "gate", self.say)) \
                or {"skipped": "failed"}
        else:
            self.res["gate"] = {"skipped": "--quick" if self.opts.quick else "not requested"}

    def all_sections(self) -> None:
        """Every wanted section in run order; a cluster that cannot start is the ``cluster`` error."""
        wanted = set(self.wanted)
        tmp = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
        try:
            if {"latency", "throughput", "memory"} & wanted:
                self.cluster_a(tmp)
            if "submit" in wanted:
                self.cluster_s(tmp)
            if {"throughput", "recovery"} & wanted:
                self.cluster_b(tmp)
            if "proxy" in wanted:
                self.proxy()
            if "bring_up" in wanted:
                self.bring_up()
            self.gate(tmp)
        except ChaosError as exc:
            self.errors["cluster"] = f"{type(exc).__name__}: {exc}"
            self.say(f"bench: could not run: {exc}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def run_bench(target: Target, options: BenchOptions | None = None, *, console: Console | None = None,
              out: Console | None = None, **fields: Any) -> int:
    """Run the benchmark, print a table on ``out``, write ``options.json_out``; 0 measured, 2 a section failed.

    ``fields`` are ``BenchOptions`` fields laid over ``options`` (for callers that name them one by one). Bad
    arguments (a bad bench table, an HTTP section on a target without an HTTP API) raise BadArguments before
    anything starts.
    """
    opts = dataclasses.replace(options or BenchOptions(), **fields)
    console = console or Console(stderr=True, highlight=False)
    out = out or Console(highlight=False)
    wanted = opts.sections()
    if opts.memory_tasks is not None and opts.memory_tasks < 1:
        raise BadArguments(f"--memory-tasks must be at least 1, not {opts.memory_tasks}")
    submitting = [s for s in wanted if s in SUBMITTING]
    if submitting and target.http is None:
        raise BadArguments(f"chaos bench measures {', '.join(submitting)} through the target's HTTP API and target "
                           f"{target.name!r} has none (client = {target.client!r}); use --only bring_up,gate")
    bp = project_plan(target) if opts.bench is None else plan(target, opts.bench)
    if opts.backend != "local":
        console.print(f"bench: measurements run on the local backend; {opts.backend!r} is only brought up for its "
                      "bring-up time")
    t_all = time.monotonic()
    run = _Run(target, opts, wanted, bp, console)
    run.all_sections()
    res = run.res
    res["wall_s"] = rounded(time.monotonic() - t_all, 1)
    json_out = opts.json_out
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2) + "\n")
    out.print(render_table(res))
    m = res["machine"]
    out.print(f"machine: {m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB, Python {m['python']}, "
              f"Celery {m['celery']}, kombu {m['kombu']}, redis-py {m['redis_py']}, redis-server {m['redis_server']}; "
              f"bench wall {res['wall_s']:.0f}s", markup=False)
    if json_out is not None:
        out.print(f"json: {json_out}", markup=False)
    return 2 if run.errors else 0
