"""``chaos bench``: latency, throughput, recovery and Redis memory of a target, measured on one machine in one run.

Every figure is the median over ``repeats`` runs (3, or 1 with ``--quick``). No figure is asserted: the benchmark
measures and reports, it never fails on speed. Everything runs on 127.0.0.1, on the local backend. The bench
talks to the target only through its description (``[tool.celery-chaos.target]``, read by ``chaos.target``) and
the optional ``[tool.celery-chaos.bench]`` table of the same pyproject; it never names anything of a target.

**The bench table** (every key optional; validated like the target table, a problem is one sentence, exit 254)::

    [tool.celery-chaos.bench]
    kind = "small"            # the task kind latency and throughput submit (default: the shortest successful kind)
    recovery_kind = "large"   # the kind the worker-SIGKILL recovery kills mid-task (default: the longest successful)
    noop_env = { KNOB = "0" } # env laid over the target's that makes the work nearly free (default: none)
    unit_ms = 20              # how long one unit of work takes with the target's own env (default: unknown)

Request bodies are the kind's ``body`` (plus ``priority_field`` set to the middle of ``priority_range`` when the
target declares one), sent with the target's ``token``; replies are read through ``task_id_field``,
``mode_field`` and ``statuses``. Targets with ``client = "celery"`` (no HTTP API) are refused for the sections that
submit (latency, submit, throughput, memory, recovery); ``proxy``, ``bring_up`` and ``gate`` still run.

What a missing key costs (nothing fails, each gap is said in the JSON):

- no ``noop_env``: cluster A runs with the target's own env and the no-op throughput is
  ``{"skipped": reason}`` (there is no no-op run to put next to a 0 ms bare task);
- no ``unit_ms``: the bare baseline of the short throughput cannot be given a duration, so the API rate is
  measured, the bare run is skipped and ``bare_tasks_per_s`` / ``ratio`` are null with ``bare_skipped`` saying why
  (a 0 ms baseline would make the ratio look worse than it is);
- no ``ledger_path`` in the target: throughput ends when the last task is *seen* terminal by status reads (in
  submission order, every 50 ms: an upper bound), the Redis-restart recovery likewise, the worker-SIGKILL recovery
  (which needs the ledger's executions) is ``{"skipped": reason}``, and drains wait for the broker only;
- no health nor ready path: the API-restart recovery waits for an accepted connection instead of a 200;
- ``broker_outage = "fail-fast"``: the fallback latency is ``{"skipped": reason}``; without ``mode_field`` a
  submit's mode is unknown, so "fallback mode" is the first accepted submit after Redis stopped.

Sections (``--only`` picks some, comma-separated; all by default, ``--quick`` leaves out the gate), in order:

1. Cluster A (the target with ``noop_env``, 1 worker). ``latency``: submit latency in celery mode at each
   concurrency level. ``throughput``: end-to-end throughput of no-op tasks (``kind`` under ``noop_env``) through
   the API with 1 and 4 workers, then the same task count through *bare Celery* (below, 0 ms tasks) with the same
   number of workers. ``memory``: Redis memory after those tasks, then the bulk run: ``memory_tasks`` bare tasks,
   the first 10,000 sent before any worker runs (the cost of a backlog), the rest consumed by two workers as they
   are sent. ``latency`` again: submit latency in fallback mode (Redis stopped).
2. Cluster S (the target's own env, no workers). ``submit``: the submit path against a bare endpoint under the same
   load, at 10 and 100 connections (``chaos.bench.submit``).
3. Cluster B (the target's own env). ``throughput`` of short tasks (``kind``) through the API and bare (tasks of
   ``units x unit_ms``); ``recovery`` times, with 2 workers.
4. ``proxy``: redis-benchmark straight at Redis and through the fault proxy without toxics (``chaos.bench.proxy``).
5. ``bring_up``: local and docker bring-up (2 workers), each the median of 3 runs; the docker image is built first
   when the current tree has none (its build time reported apart; ``--quick`` skips instead of building).
6. ``gate``: the default gate profile's wall time.

Defaults: 3 runs, levels 1/10/100/1000, 20,000 memory tasks (~70 s on 2 cores; ``--memory-tasks 100000`` ~6 min:
bare Celery moves ~250-450 tasks/s there); ``--quick``: 1 run, levels 1/10/100, 2,000 memory tasks.

**Bare Celery.** A target's own task cannot serve as its baseline in general (it may need state the API writes
first: sent straight to Redis it may be acked and ignored, which would flatter it), so the bare baseline is a tiny
Celery app written to a temp dir (task ``bench.bare``: sleep the kind's ``units x unit_ms``, then record its
finish time in Redis) run by ``celery -A`` workers we start ourselves, with the same count, concurrency, prefetch
(1), ``acks_late``, ``ignore_result``, priority sub-queues and the same Redis through the same fault-proxy links
as the target's workers (the target's workers are scaled to 0 meanwhile, so both get the same cores). The ratio
``api / bare`` is what the API and everything the target does around its task cost end to end.

JSON keys (``--json FILE``), all times in seconds unless the key says ``_ms``:

- ``schema``: ``"celery-chaos-bench/1"``; ``quick``: bool; ``sections``: the sections run; ``command``: the command
  line; ``started_at``: epoch s; ``wall_s``: the whole benchmark; ``section_seconds``: {measurement: seconds}.
- ``machine``: ``cores``, ``memory_bytes``, ``platform``, ``python``, ``celery``, ``kombu``, ``redis_py``,
  ``redis_server``.
- ``settings``: ``repeats``, ``concurrency_levels``, ``requests_per_level`` {level: requests per run},
  ``sockets_per_level`` {level: client connection-pool size}, ``throughput_tasks`` {noop, short},
  ``worker_counts``, ``worker_concurrency``, ``memory_tasks``, ``recovery_repeats``, ``bring_up_repeats``; from
  the bench table: ``kind``, ``kind_units``, ``recovery_kind``, ``noop_env``, ``unit_ms`` (null: unknown),
  ``bare_work_ms`` {noop, short} (the bare task's sleep; null: unknown), and ``row_work_ms_short``, the schema-1
  name of ``unit_ms``, kept for readers of older files.
- ``bring_up``: ``local`` {``seconds`` (median), ``runs``, ``workers``}; ``docker`` the same plus ``image`` and
  ``image_build_s`` (null when it was already built), or {``skipped``: reason}.
- ``submit_latency``: {``celery``|``fallback``: {level as string: {``p50_ms``, ``p99_ms``, ``max_ms`` (medians over
  runs), ``requests``, ``sockets``, ``errors`` (non-2xx answers, summed), ``modes`` (the ``mode_field`` values
  seen), ``runs`` (per-run triples)}} or {``skipped``: reason}}.
- ``throughput``: {``noop``|``short``: {workers as string: {``tasks``, ``api_tasks_per_s``, ``bare_tasks_per_s``,
  ``ratio`` (api / bare), ``api_runs``, ``bare_runs``, and ``bare_skipped`` (reason) when the baseline was not
  run (then ``bare_tasks_per_s`` and ``ratio`` are null)}} or {``skipped``: reason}}.
- ``recovery``: {``worker_sigkill_s`` (kill -> the next execution's started_at), ``redis_restart_s`` (Redis ready
  -> the first celery-mode task submitted after it finishing), ``api_restart_s`` (start call -> first 200 on the
  probe path, or first accepted connection), ``api_kill_to_serving_s`` (kill -> the same)}: each {``median``,
  ``runs``} or {``skipped``: reason}.
- ``redis_memory``: ``bulk`` {``tasks``, ``via``, ``before_bytes``, ``after_bytes``, ``bytes_per_task`` (kept after
  they all finished), ``queued_tasks``, ``queued_bytes``, ``bytes_per_queued_task``, ``seconds``, ``tasks_per_s``}
  and ``api`` (before/after/per task over the tasks of the latency and throughput phases: the submits the API
  accepted plus the bare tasks sent).
- ``submit`` (``chaos.bench.submit``): {level as string: {``target``|``bare``: {``rps``, ``p50_ms``, ``p90_ms``,
  ``p99_ms``, ``non_2xx``, ``socket_errors``, ``rps_runs``, ``rps_median``}, ``ratio`` (target / bare req/s)},
  ``settings``: {``generator`` (wrk | client processes), ``seconds``, ``repeats``, ``levels``}} or {``skipped``}.
- ``proxy`` (``chaos.bench.proxy``): {clients as string: {``direct_ops_s``, ``proxied_ops_s``, ``ratio``,
  ``runs``}, ``settings``: {``ops``, ``requests``, ``repeats``, ``event_loop``}} or {``skipped``: reason}.
- ``gate``: {``wall_s``, ``exit_code``, ``scenarios``} or {``skipped``: reason}.
- ``errors``: sections that could not be measured, {section: message} (exit code 2 when not empty).
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.metadata as md
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from chaos.cluster.cleanup import mark
from chaos.errors import BadArguments, ChaosError
from chaos.stats import median as _median
from chaos.stats import percentile
from chaos.target import TERMINAL_STATES, HttpContract, Target, TaskKind, env_strings, explain, load_config

SCHEMA = "celery-chaos-bench/1"
BENCH_TABLE = "[tool.celery-chaos.bench]"
BARE_QUEUE = "bench_bare"
BARE_TASK = "bench.bare"
MAX_SOCKETS = 1000
SUBMITTING = ("latency", "submit", "throughput", "memory", "recovery")  # the sections that need the target's HTTP API

BARE_APP = '''\
"""Bare Celery baseline for chaos bench (written and run by chaos/bench)."""
import os
import time

import redis
from celery import Celery
from celery.signals import worker_ready
from kombu import Queue

app = Celery("bench_bare", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=int(os.environ["BENCH_PREFETCH"]),
    task_ignore_result=True, task_serializer="json", accept_content=["json"], task_default_queue="bench_bare",
    task_queues=[Queue("bench_bare", routing_key="bench_bare")], worker_send_task_events=False, broker_heartbeat=0,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600, "priority_steps": list(range(10)), "sep": "\\x06\\x16",
                              "queue_order_strategy": "priority"},
)
_done = None


@worker_ready.connect
def _ready(**_):
    open(os.environ["BENCH_READY_FILE"], "w").close()


@app.task(name="bench.bare", ignore_result=True)
def bare(key, work_s):
    global _done
    if work_s:
        time.sleep(work_s)
    if _done is None:
        _done = redis.Redis.from_url(os.environ["BENCH_DONE_URL"])
    if key.endswith(":count"):
        _done.incr(key)
    else:
        _done.rpush(key, repr(time.time()))
'''


# ---------------------------------------------------------------------------------------------- the bench table
class BenchConfig(BaseModel):
    """The ``[tool.celery-chaos.bench]`` table, as written (kinds are checked against the target by ``plan``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = Field(default=None, min_length=1)  # latency and throughput submit it
    recovery_kind: str | None = Field(default=None, min_length=1)  # the worker-SIGKILL recovery kills it mid-task
    noop_env: dict[str, str] = Field(default_factory=dict)  # env over the target's: the work nearly free
    unit_ms: float | None = Field(default=None, ge=0, le=3_600_000)  # one unit of work, with the target's env

    @field_validator("noop_env", mode="before")
    @classmethod
    def _env_values(cls, v: Any) -> Any:
        return env_strings(v)


def _explain(exc: ValidationError, table: Mapping[str, Any]) -> str:
    """One sentence for a bad bench table (``chaos.target.explain``, named after this table and its keys)."""
    e = exc.errors(include_url=False)[0]
    if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
        key = str(e["loc"][0])
        n = len(exc.errors()) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        close = difflib.get_close_matches(key, list(BenchConfig.model_fields), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{BENCH_TABLE}: unknown key {key!r}{hint}{more}"
    return explain(exc, table, where=BENCH_TABLE).replace("[tool.celery-chaos.target", "[tool.celery-chaos.bench", 1)


def bench_config(table: Any) -> BenchConfig:
    """Validate a ``[tool.celery-chaos.bench]`` table (None: every default); a problem is one BadArguments sentence."""
    if table is None:
        return BenchConfig()
    if isinstance(table, BenchConfig):
        return table
    if not isinstance(table, Mapping):
        raise BadArguments(f"{BENCH_TABLE} must be a table, not {type(table).__name__}")
    try:
        return BenchConfig.model_validate(dict(table))
    except ValidationError as exc:
        raise BadArguments(_explain(exc, table)) from None


def load_bench_config(pyproject: Path) -> BenchConfig:
    """The bench table of a project's pyproject (``load_config(path)["bench"]``), or the defaults without one."""
    return bench_config(load_config(pyproject).get("bench"))


@dataclass(frozen=True)
class BenchPlan:
    """The bench table resolved against a target: the kinds themselves, and what is unknown."""

    kind: TaskKind
    recovery_kind: TaskKind
    noop_env: dict[str, str] = field(default_factory=dict)
    unit_ms: float | None = None

    @property
    def short_work_s(self) -> float | None:
        """The bare baseline's task duration for ``kind`` with the target's own env (None: unknown)."""
        return None if self.unit_ms is None else self.kind.units * self.unit_ms / 1000.0

    @property
    def noop_skipped(self) -> str | None:
        """Why there is no no-op throughput run (None: there is one)."""
        if self.noop_env:
            return None
        return (f"no noop_env in {BENCH_TABLE}: the target's work is not made free, so there is no no-op run to "
                "compare with a 0 ms bare task")

    @property
    def short_bare_skipped(self) -> str | None:
        if self.unit_ms is not None:
            return None
        return (f"no unit_ms in {BENCH_TABLE}: the duration of one {self.kind.name!r} task is unknown, so the bare "
                "baseline and the ratio cannot be computed")

    def settings(self) -> dict[str, Any]:
        short = self.short_work_s
        return {"kind": self.kind.name, "kind_units": self.kind.units, "recovery_kind": self.recovery_kind.name,
                "noop_env": dict(self.noop_env), "unit_ms": self.unit_ms, "row_work_ms_short": self.unit_ms,
                "bare_work_ms": {"noop": 0.0 if self.noop_skipped is None else None,
                                 "short": None if short is None else _r(short * 1000.0, 3)}}


def _kind(target: Target, name: str, key: str) -> TaskKind:
    names = [k.name for k in target.kinds]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"it has {', '.join(map(repr, names))}"
        raise BadArguments(f"{BENCH_TABLE} {key}: the target has no task kind {name!r} ({hint})")
    k = target.kind(name)
    if k.expect != "SUCCESS":
        raise BadArguments(f"{BENCH_TABLE} {key}: task kind {name!r} is expected to fail; the bench needs one that "
                           "succeeds")
    return k


def plan(target: Target, table: Any = None) -> BenchPlan:
    """Resolve a bench table (a mapping, a ``BenchConfig`` or None) against ``target``; problems are BadArguments."""
    cfg = bench_config(table)
    ok = sorted((k for k in target.kinds if k.expect == "SUCCESS"), key=lambda k: k.units)
    if not ok:
        raise BadArguments(f"target {target.name!r} has no task kind that is expected to succeed; the bench needs one")
    kind = _kind(target, cfg.kind, "kind") if cfg.kind else ok[0]
    rec = _kind(target, cfg.recovery_kind, "recovery_kind") if cfg.recovery_kind else ok[-1]
    return BenchPlan(kind=kind, recovery_kind=rec, noop_env=dict(cfg.noop_env), unit_ms=cfg.unit_ms)


def _project_plan(target: Target) -> BenchPlan:
    """The plan from the target's own pyproject (``target.root / "pyproject.toml"``), defaults without one."""
    path = target.root / "pyproject.toml"
    return plan(target, load_bench_config(path) if path.is_file() else None)


# ---------------------------------------------------------------------------------------------- small helpers
def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def _mem(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def machine_info(redis_client: Any | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"cores": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
                           "platform": platform.platform(), "python": platform.python_version()}
    for key, pkg in (("celery", "celery"), ("kombu", "kombu"), ("redis_py", "redis")):
        try:
            out[key] = md.version(pkg)
        except md.PackageNotFoundError:
            out[key] = "?"
    out["redis_server"] = "?"
    if redis_client is not None:
        try:
            out["redis_server"] = str(redis_client.info("server").get("redis_version"))
        except Exception:  # noqa: BLE001
            pass
    return out


def link_url(cluster: Any, link: str) -> str:
    """The Redis URL of fault-proxy ``link`` as a process on this host reaches it (public cluster API only)."""
    assert cluster.proxy is not None and cluster.proxy_node is not None, "cluster not started"
    p = cluster.proxy.get(link)
    host, port = cluster.backend.link_address(cluster.proxy_node, p.listen, from_host=True)
    return f"redis://{host}:{port}/0"


class _Api:
    """The target's HTTP contract as the benchmark uses it (loopback only)."""

    def __init__(self, cluster: Any, bench: BenchPlan) -> None:
        self.c = cluster
        http = cluster.target.http
        assert isinstance(http, HttpContract), "the bench needs a target with an HTTP API"
        self.http: HttpContract = http
        self.plan = bench
        self.auth = {"Authorization": f"Bearer {http.token}"} if http.token else {}
        self.admin = {"Authorization": f"Bearer {http.ledger_token}"} if http.ledger_token else {}
        self.client = httpx.Client(timeout=10.0)
        self.accepted = 0  # submits answered 2xx (the memory section's count of tasks through the API)

    @property
    def url(self) -> str:
        return str(self.c.api_url)

    @property
    def has_ledger(self) -> bool:
        return bool(self.http.ledger_path)

    def body(self, kind: TaskKind | None = None) -> dict[str, Any]:
        """The kind's submit body, with the middle priority when the target takes one."""
        body = dict((kind or self.plan.kind).body)
        if self.http.priority_field:
            lo, hi = self.http.priority_range
            body[self.http.priority_field] = (lo + hi + 1) // 2
        return body

    def task_id(self, reply: Mapping[str, Any]) -> str:
        tid = reply.get(self.http.task_id_field)
        if not tid:
            raise ChaosError(f"the submit reply has no {self.http.task_id_field!r}: {str(dict(reply))[:200]}")
        return str(tid)

    def mode(self, reply: Mapping[str, Any]) -> str | None:
        """How a submit was accepted (``mode_field``), None when the target does not say."""
        return str(reply.get(self.http.mode_field)) if self.http.mode_field else None

    def submit(self, kind: TaskKind | None = None) -> dict[str, Any]:
        r = self.client.request(self.http.submit_method, self.url + self.http.submit_path, json=self.body(kind),
                                headers=self.auth)
        r.raise_for_status()
        self.accepted += 1
        return dict(r.json())

    def status(self, task_id: str) -> str | None:
        """The task's Celery state by the status path (None: no answer yet)."""
        r = self.client.get(self.url + self.http.status_path.format(task_id=task_id), headers=self.auth,
                            timeout=5.0)
        if r.status_code != 200:
            return None
        raw = r.json().get(self.http.status_field)
        return None if raw is None else self.http.canonical_status(raw)

    def ledger(self, since: float | None = None) -> list[dict[str, Any]]:
        if not self.http.ledger_path:
            raise ChaosError("this measure needs the target's ledger probe (http.ledger_path)")
        params = {"since": since} if since is not None else None
        r = self.client.get(self.url + self.http.ledger_path, params=params, headers=self.admin, timeout=30.0)
        r.raise_for_status()
        return list(r.json()["tasks"])

    def finished_at(self, ids: Iterable[str], since: float, timeout: float = 300.0,
                    success_only: bool = False) -> float:
        """Epoch when the last of ``ids`` finished: the ledger's ``finished_at``, else when a status read saw it.

        Without a ledger the status of the oldest unfinished task is read every 50 ms, in submission order; the
        time a task is seen terminal is an upper bound of its finish.
        """
        order = list(dict.fromkeys(ids))
        want = set(order)
        states = ("SUCCESS",) if success_only else TERMINAL_STATES
        if self.has_ledger:
            def finished() -> list[dict[str, Any]] | None:
                mine = [t for t in self.ledger(since) if t["task_id"] in want]
                if len(mine) == len(want) and all(t["state"] in states for t in mine):
                    return mine
                return None
            tasks = _wait(finished, timeout, f"{len(want)} task(s) to finish", 0.25)
            return max(float(e["finished_at"]) for t in tasks for e in t["executions"] if e.get("finished_at"))
        last = 0.0
        deadline = time.monotonic() + timeout
        while order:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {len(order)} task(s) to finish")
            try:
                while order and self.status(order[0]) in states:
                    last = time.time()
                    order.pop(0)
            except httpx.HTTPError:
                pass
            if order:
                time.sleep(0.05)
        return last

    def close(self) -> None:
        self.client.close()


def _wait(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _set_workers(cluster: Any, n: int) -> None:
    cluster.scale(n)
    cluster.n_workers = n  # so heal() keeps this count


def _queue_backlog(cluster: Any) -> int:
    """Messages still queued or delivered-but-unacked in Redis (every queue of the target, and ours)."""
    r = cluster.redis.client(timeout=2.0)
    try:
        n = 0
        for q in (*cluster.target.queues, BARE_QUEUE):
            for k in r.keys(f"{q}*"):
                if r.type(k) == b"list":
                    n += int(r.llen(k))
        return n + int(r.hlen("unacked"))
    finally:
        r.close()


def _drain(cluster: Any, api: _Api | None, timeout: float = 180.0, broker: bool = True) -> None:
    """Wait until Redis holds no work and (given an API with a ledger) no task of the ledger is unfinished.

    After a worker SIGKILL its delivered message stays in kombu's ``unacked`` hash until the visibility timeout
    (a target's recovery may re-dispatch the task meanwhile), so after faults only the ledger is waited for.
    """
    if broker:
        _wait(lambda: _queue_backlog(cluster) == 0, timeout, "the broker queues to drain", 0.2)
    if api is not None and api.has_ledger:
        _wait(lambda: all(t["state"] in TERMINAL_STATES for t in api.ledger()), timeout,
              "every task to finish", 0.5)


# ---------------------------------------------------------------------------------------------- bare Celery
class BareWorkers:
    """``celery -A bench_bare_app worker`` processes we start and always kill (by pid group)."""

    def __init__(self, cluster: Any, workdir: Path) -> None:
        self.c = cluster
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "bench_bare_app.py").write_text(BARE_APP)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.broker_url = link_url(cluster, "workers_redis")  # the workers' proxy link, as theirs
        self.producer_url = link_url(cluster, "api_redis")  # the API's proxy link, as the API's
        self.done_url = cluster.redis.url
        self._producers: dict[bool, Any] = {}
        self.sent = 0  # tasks sent through the proxy links (not the direct bulk run)

    def start(self, n: int, concurrency: int, prefetch: int = 1, direct: bool = False, pool: str = "prefork",
              loglevel: str = "info") -> None:
        """``loglevel`` info logs every task, as the target's workers do; the bulk memory run uses warning."""
        broker = self.done_url if direct else self.broker_url
        env = {**os.environ, **mark(self.c.run_id), "BENCH_BROKER_URL": broker,
               "BENCH_DONE_URL": self.done_url, "BENCH_PREFETCH": str(prefetch),
               "PYTHONPATH": str(self.dir), "PYTHONUNBUFFERED": "1"}
        started = []
        for i in range(n):
            log = self.dir / f"bare-{len(self.procs)}.log"
            ready_file = log.with_suffix(".ready")
            argv = [sys.executable, "-m", "celery", "-A", "bench_bare_app", "worker", f"--loglevel={loglevel}",
                    f"--queues={BARE_QUEUE}", f"--concurrency={concurrency}", f"--hostname=bare-{i}@%h", f"--pool={pool}",
                    "--without-mingle", "--without-gossip"]
            with log.open("wb") as fh:
                p = subprocess.Popen(argv, cwd=self.dir, env={**env, "BENCH_READY_FILE": str(ready_file)},  # noqa: S603
                                     stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
            self.procs.append((p, log))
            started.append((p, log))
        for p, log in started:
            def ready(p: subprocess.Popen[bytes] = p, log: Path = log) -> bool:
                if p.poll() is not None:
                    raise ChaosError(f"bare worker exited: {log.read_text()[-2000:]}")
                return log.with_suffix(".ready").exists()
            _wait(ready, 60, "a bare Celery worker to be ready", 0.1)

    def stop(self) -> None:
        for p, _ in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self.procs = []

    def producer(self, direct: bool = False) -> Any:
        if direct not in self._producers:
            from celery import Celery

            app = Celery("bench_producer", broker=self.done_url if direct else self.producer_url)
            app.conf.update(task_serializer="json", broker_transport_options={
                "visibility_timeout": 3600, "priority_steps": list(range(10)), "sep": "\x06\x16",
                "queue_order_strategy": "priority"})
            self._producers[direct] = app
        return self._producers[direct]

    def send(self, key: str, work_s: float, direct: bool = False, producer: Any = None) -> None:
        """One task; pass a held kombu ``producer`` (``app.producer_or_acquire()``) to skip the pool per send."""
        self.producer(direct).send_task(BARE_TASK, args=[key, work_s], queue=BARE_QUEUE, routing_key=BARE_QUEUE,
                                        priority=4, producer=producer)
        if not direct:
            self.sent += 1

    def close(self) -> None:
        self.stop()
        for app in self._producers.values():
            app.close()
        self._producers = {}


# ---------------------------------------------------------------------------------------------- latency
def _plan(level: int, quick: bool) -> int:
    """Requests per client at a concurrency level (so every run has enough samples for a p99)."""
    if level == 1:
        return 20 if quick else 50
    if level <= 10:
        return 5 if quick else 10
    if level <= 100:
        return 1 if quick else 2
    return 1


async def _latency_run(api: _Api, clients: int, per_client: int, sockets: int) -> tuple[list[float], int, set[str]]:
    limits = httpx.Limits(max_connections=sockets, max_keepalive_connections=sockets)
    lat: list[float] = []
    errors = 0
    modes: set[str] = set()
    http, body = api.http, api.body()
    async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=60.0, headers=api.auth) as cl:
        async def one() -> None:
            nonlocal errors
            for _ in range(per_client):
                t = time.perf_counter()
                try:
                    r = await cl.request(http.submit_method, http.submit_path, json=body)
                    ok = r.is_success
                    if ok:
                        api.accepted += 1
                        mode = api.mode(r.json())
                        if mode is not None:
                            modes.add(mode)
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t) * 1000.0)
                errors += 0 if ok else 1
        await asyncio.gather(*(one() for _ in range(clients)))
    return lat, errors, modes


def measure_latency(api: _Api, levels: Iterable[int], repeats: int, quick: bool, say: Callable[[str], None],
                    mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in levels:
        per = _plan(level, quick)
        sockets = min(level, MAX_SOCKETS)
        runs = []
        errors = 0
        seen: set[str] = set()
        for _ in range(repeats):
            lat, err, modes = asyncio.run(_latency_run(api, level, per, sockets))
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            assert p50 is not None and p99 is not None  # every run sends requests
            runs.append((p50, p99, max(lat)))
            errors += err
            seen |= modes
        out[str(level)] = {"p50_ms": _r(_median(r[0] for r in runs), 2), "p99_ms": _r(_median(r[1] for r in runs), 2),
                           "max_ms": _r(_median(r[2] for r in runs), 2), "requests": level * per,
                           "sockets": sockets, "errors": errors, "modes": sorted(seen),
                           "runs": [[_r(x, 2) for x in r] for r in runs]}
        say(f"    {mode} x{level}: p50 {out[str(level)]['p50_ms']:.1f} ms, p99 {out[str(level)]['p99_ms']:.1f} ms, "
            f"max {out[str(level)]['max_ms']:.1f} ms ({level * per} requests/run, modes {sorted(seen)})")
    return out


def _fallback_latency(c: Any, api: _Api, levels: list[int], repeats: int, quick: bool,
                      say: Callable[[str], None]) -> dict[str, Any]:
    """Submit latency with Redis stopped: in fallback mode (``mode_field``), else once a submit is accepted."""
    if c.target.broker_outage != "fallback":
        return {"skipped": "the target declares broker_outage = \"fail-fast\": there is no fallback mode to measure"}
    c.redis.stop()
    try:
        if api.http.mode_field:
            _wait(lambda: api.mode(api.submit()) == "fallback", 30, "fallback mode", 0.1)
        else:
            _wait(api.submit, 30, "a submit accepted with Redis stopped", 0.1)
        return measure_latency(api, levels, repeats, quick, say, "fallback")
    finally:
        c.redis.start()


# ---------------------------------------------------------------------------------------------- throughput
async def _submit_many(api: _Api, n: int, clients: int = 20) -> list[str]:
    ids: list[str] = []
    todo = iter(range(n))
    http, body = api.http, api.body()
    async with httpx.AsyncClient(base_url=api.url, headers=api.auth, timeout=60.0,
                                 limits=httpx.Limits(max_connections=clients)) as cl:
        async def one() -> None:
            for _ in todo:
                r = await cl.request(http.submit_method, http.submit_path, json=body)
                r.raise_for_status()
                api.accepted += 1
                ids.append(api.task_id(r.json()))
        await asyncio.gather(*(one() for _ in range(clients)))
    return ids


def api_throughput(api: _Api, n: int) -> float:
    since = time.time() - 0.001
    t0 = time.time()
    ids = asyncio.run(_submit_many(api, n))
    end = api.finished_at(ids, since)
    return n / (end - t0)


def bare_throughput(bare: BareWorkers, cluster: Any, n: int, work_s: float) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    r = cluster.redis.client(timeout=5.0)
    try:
        t0 = time.time()
        for _ in range(n):
            bare.send(key, work_s)
        _wait(lambda: r.llen(key) >= n, 300, f"{n} bare tasks to finish", 0.05)
        end = max(float(x) for x in r.lrange(key, 0, -1))
        r.delete(key)
    finally:
        r.close()
    return n / (end - t0)


def measure_throughput(cluster: Any, api: _Api, bare: BareWorkers, n: int, work_s: float | None,
                       worker_counts: list[int], repeats: int, say: Callable[[str], None], label: str,
                       bare_skipped: str | None = None) -> dict[str, Any]:
    """API then bare throughput at each worker count; ``work_s`` None: the bare run is skipped (``bare_skipped``)."""
    out: dict[str, Any] = {}
    conc = cluster.target.worker_concurrency
    for w in worker_counts:
        _set_workers(cluster, w)
        _drain(cluster, api)
        api_runs = [api_throughput(api, n) for _ in range(repeats)]
        a = _median(api_runs)
        v: dict[str, Any] = {"tasks": n, "api_tasks_per_s": _r(a, 2), "bare_tasks_per_s": None, "ratio": None,
                             "api_runs": [_r(x, 2) for x in api_runs], "bare_runs": []}
        if work_s is None:
            v["bare_skipped"] = bare_skipped or "the bare task's duration is unknown"
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s; bare skipped ({v['bare_skipped']})")
        else:
            _set_workers(cluster, 0)
            bare.start(w, conc)
            try:
                bare_runs = [bare_throughput(bare, cluster, n, work_s) for _ in range(repeats)]
            finally:
                bare.stop()
            b = _median(bare_runs)
            v.update(bare_tasks_per_s=_r(b, 2), ratio=_r(a / b, 3), bare_runs=[_r(x, 2) for x in bare_runs])
            say(f"    {label}, {w} worker(s) x{conc}: api {a:.1f}/s, bare {b:.1f}/s, ratio {a / b:.2f}")
        out[str(w)] = v
    return out


# ---------------------------------------------------------------------------------------------- memory
def measure_bulk_memory(cluster: Any, bare: BareWorkers, n: int, say: Callable[[str], None],
                        backlog: int = 10_000) -> dict[str, Any]:
    """``n`` bare no-op tasks through Redis: used_memory before and after they all finished (bytes kept per task).

    The first ``backlog`` tasks are sent before any worker runs, so used_memory with them all queued gives the
    cost of a backlog (bytes per queued task: what a broker outage with workers down costs); then two workers
    consume while the rest is sent in batches.
    """
    r = cluster.redis.client(timeout=5.0)
    key = f"bench:bulk:{uuid.uuid4().hex}:count"
    batch = 2500
    backlog = min(backlog, n)

    def done() -> int:
        return int(r.get(key) or 0)

    try:
        _wait(lambda: _queue_backlog(cluster) == 0, 120, "an empty broker", 0.2)
        before = _mem(r)
        t0 = time.monotonic()
        with bare.producer(direct=True).producer_or_acquire() as producer:
            for _ in range(backlog):
                bare.send(key, 0.0, direct=True, producer=producer)
            queued_bytes = _mem(r)
            sent = backlog
            bare.start(2, 1, prefetch=64, direct=True, pool="solo", loglevel="warning")
            try:
                while sent < n:
                    k = min(batch, n - sent)
                    for _ in range(k):
                        bare.send(key, 0.0, direct=True, producer=producer)
                    sent += k
                    floor = sent - 2 * batch
                    _wait(lambda: done() >= floor, 600, "the bulk backlog to shrink", 0.05)  # noqa: B023
                _wait(lambda: done() >= n, 600, "every bulk task to finish", 0.05)
                _wait(lambda: _queue_backlog(cluster) == 0, 60, "an empty broker", 0.1)
            finally:
                bare.stop()
        secs = time.monotonic() - t0
        r.delete(key)
        after = _mem(r)
    finally:
        r.close()
    say(f"    {n} bulk tasks in {secs:.0f}s ({n / secs:.0f}/s): used_memory {before} -> {after} B; "
        f"{queued_bytes} B with {backlog} queued")
    return {"tasks": n, "via": "bare Celery (send_task to celery -A workers on the same Redis, directly, not "
                               "through the fault proxy; 2 solo-pool workers, prefetch 64)",
            "before_bytes": before, "after_bytes": after, "bytes_per_task": _r((after - before) / n, 3),
            "queued_tasks": backlog, "queued_bytes": queued_bytes,
            "bytes_per_queued_task": _r((queued_bytes - before) / backlog, 1),
            "seconds": _r(secs, 1), "tasks_per_s": _r(n / secs, 1)}


# ---------------------------------------------------------------------------------------------- recovery
def _worker_of(cluster: Any, name: str) -> Any:
    short = name.split("@", 1)[0]
    for w in cluster.workers:
        if w.name == short:
            return w
    return None


def recover_worker_sigkill(cluster: Any, api: _Api) -> float:
    """SIGKILL the worker running a ``recovery_kind`` task; seconds until the ledger shows it running again."""
    since = time.time() - 0.001
    tid = api.task_id(api.submit(api.plan.recovery_kind))

    def running() -> dict[str, Any] | None:
        for t in api.ledger(since):
            if t["task_id"] == tid and t["executions"] and t["executions"][-1]["finished_at"] is None:
                return dict(t["executions"][-1])
        return None
    ex = _wait(running, 30, "the long task to start", 0.05)
    time.sleep(0.3)
    victim = _worker_of(cluster, str(ex["worker"])) or cluster.workers[0]
    t_kill = time.time()
    victim.kill(signal.SIGKILL)

    def rerun() -> float | None:
        for t in api.ledger(since):
            if t["task_id"] == tid:
                later = [e for e in t["executions"] if e["attempt"] > ex["attempt"] and e.get("started_at")]
                if later:
                    return float(later[0]["started_at"])
        return None
    started = _wait(rerun, 60, "the killed task to run again", 0.05)
    victim.start()
    _wait(lambda: next(t for t in api.ledger(since) if t["task_id"] == tid)["state"] in TERMINAL_STATES, 60,
          "the recovered task to finish", 0.2)
    return started - t_kill


def recover_redis_restart(cluster: Any, api: _Api) -> float:
    """Stop and start Redis; seconds from its start to the first task submitted in celery mode finishing."""
    cluster.redis.stop()
    time.sleep(1.0)
    cluster.redis.start()
    t_start = time.time()
    since = t_start - 0.001
    tid: str | None = None
    deadline = time.monotonic() + 60
    while tid is None and time.monotonic() < deadline:
        try:
            reply = api.submit()
        except httpx.HTTPError:  # a fail-fast target may refuse until it has reconnected
            reply = None
        if reply is not None and api.mode(reply) in ("celery", None):
            tid = api.task_id(reply)
        else:
            time.sleep(0.05)
    if tid is None:
        raise TimeoutError("the API never published to Redis again after its restart")
    end = api.finished_at([tid], since, timeout=120, success_only=True)
    _drain(cluster, api, broker=False)
    return end - t_start


def recover_api_kill(cluster: Any, api: _Api) -> tuple[float, float]:
    """SIGKILL the API, start it again: (start call -> serving, kill -> serving); serving = ``api_answers``."""
    from chaos.cluster.base import api_answers

    t_kill = time.monotonic()
    cluster.api.kill(signal.SIGKILL)
    t_call = time.monotonic()
    cluster.api.spawn()
    _wait(lambda: api_answers(api.url, api.http.probe_path, timeout=0.5), 60, "the API to serve again", 0.01)
    t_ok = time.monotonic()
    return t_ok - t_call, t_ok - t_kill


# ---------------------------------------------------------------------------------------------- the run
OPS_LABEL = "SET+GET"
SUBMIT_LEVELS = (10, 100)  # concurrent connections of the submit section (the plan's 10 and 100)
SECTIONS = ("latency", "submit", "throughput", "memory", "recovery", "proxy", "bring_up", "gate")


def _defaults(quick: bool) -> dict[str, Any]:
    return {"repeats": 1 if quick else 3, "concurrency_levels": (1, 10, 100) if quick else (1, 10, 100, 1000),
            "throughput_tasks": {"noop": 60, "short": 40} if quick else {"noop": 200, "short": 100},
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


def run_bench(target: Target, backend: str = "local", json_out: Path | None = None, quick: bool = False,
              console: Console | None = None, out: Console | None = None, *,
              concurrency_levels: Iterable[int] | None = None, memory_tasks: int | None = None,
              throughput_tasks: dict[str, int] | None = None, worker_counts: Iterable[int] | None = None,
              repeats: int | None = None, recovery_repeats: int | None = None, gate: bool | None = None,
              docker: bool = True, only: Iterable[str] | str | None = None,
              bring_up_repeats: int | None = None, bench: Mapping[str, Any] | BenchConfig | None = None) -> int:
    """Run the benchmark, print a table on ``out``, write ``json_out``; 0 measured, 2 a section failed.

    ``only`` limits the run to some of ``SECTIONS`` (default: all; ``--quick`` leaves out the gate unless named).
    ``bench`` is the ``[tool.celery-chaos.bench]`` table (default: read from the target's pyproject). Bad
    arguments (a bad bench table, an HTTP section on a target without an HTTP API) raise BadArguments before
    anything starts.
    """
    from chaos.cluster.cluster import Cluster

    console = console or Console(stderr=True, highlight=False)
    out = out or Console(highlight=False)
    wanted = parse_sections(only)
    if only is None and (quick if gate is None else not gate):
        wanted.remove("gate")
    elif gate is True and "gate" not in wanted:
        wanted.append("gate")
    if memory_tasks is not None and memory_tasks < 1:
        raise BadArguments(f"--memory-tasks must be at least 1, not {memory_tasks}")
    submitting = [s for s in wanted if s in SUBMITTING]
    if submitting and target.http is None:
        raise BadArguments(f"chaos bench measures {', '.join(submitting)} through the target's HTTP API and target "
                           f"{target.name!r} has none (client = {target.client!r}); use --only bring_up,gate")
    bp = _project_plan(target) if bench is None else plan(target, bench)
    if backend != "local":
        console.print(f"bench: measurements run on the local backend; {backend!r} is only brought up for its "
                      "bring-up time")
    d = _defaults(quick)
    levels = list(concurrency_levels or d["concurrency_levels"])
    reps = repeats or d["repeats"]
    rec_reps = recovery_repeats or d["recovery_repeats"]
    up_reps = bring_up_repeats or d["bring_up_repeats"]
    tput_n = {**d["throughput_tasks"], **(throughput_tasks or {})}
    wcounts = list(worker_counts or d["worker_counts"])
    mem_n = memory_tasks or d["memory_tasks"]

    def say(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)

    t_all = time.monotonic()
    res: dict[str, Any] = {
        "schema": SCHEMA, "quick": quick, "sections": wanted,
        "command": shlex.join(["chaos", *sys.argv[1:]]) if sys.argv else "chaos bench",
        "started_at": _r(time.time(), 3), "machine": machine_info(),
        "settings": {"repeats": reps, "recovery_repeats": rec_reps, "bring_up_repeats": up_reps,
                     "concurrency_levels": levels,
                     "requests_per_level": {str(lv): lv * _plan(lv, quick) for lv in levels},
                     "sockets_per_level": {str(lv): min(lv, MAX_SOCKETS) for lv in levels},
                     "throughput_tasks": tput_n, "worker_counts": wcounts,
                     "worker_concurrency": target.worker_concurrency, "memory_tasks": mem_n,
                     **bp.settings()},
        "bring_up": {}, "submit_latency": {}, "submit": {}, "throughput": {}, "recovery": {}, "redis_memory": {}, "proxy": {}, "gate": {},
        "section_seconds": {}, "errors": {},
    }
    errors: dict[str, str] = res["errors"]
    timings: dict[str, float] = res["section_seconds"]

    def section(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        try:
            return fn()
        except (ChaosError, TimeoutError, httpx.HTTPError, OSError, AssertionError) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            say(f"    {name}: could not measure: {exc}")
            return None
        finally:
            timings[name] = _r(timings.get(name, 0.0) + time.monotonic() - t0, 1)

    tmp = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    try:
        # ---- cluster A: no-op-ish tasks -----------------------------------------------------------------------
        if {"latency", "throughput", "memory"} & set(wanted):
            env_a = ", ".join(f"{k}={v}" for k, v in bp.noop_env.items()) or "the target's own env: no noop_env"
            say(f"bench: cluster A ({env_a}, 1 worker) on local ...")
            with Cluster(target, backend="local", workers=1, env=bp.noop_env or None) as c:
                redis_node = c.redis
                assert redis_node is not None
                res["machine"] = machine_info(redis_node.client())
                api = _Api(c, bp)
                bare = BareWorkers(c, tmp / "bare-a")
                try:
                    rc = redis_node.client(timeout=5.0)
                    m0 = _mem(rc)
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
                            c, api, bare, tput_n["noop"], 0.0, wcounts, reps, say, "no-op"))
                        if tp:
                            res["throughput"]["noop"] = tp
                    if "memory" in wanted:
                        _set_workers(c, 1)
                        section("drain", lambda: _drain(c, api))
                        m1 = _mem(rc)
                        n_api, n_bare = api.accepted, bare.sent
                        if n_api + n_bare:
                            res["redis_memory"]["api"] = {
                                "tasks": n_api + n_bare, "via": f"{n_api} through the API + {n_bare} bare (the "
                                                              "latency and throughput phases)",
                                "before_bytes": m0, "after_bytes": m1,
                                "bytes_per_task": _r((m1 - m0) / (n_api + n_bare), 3)}
                        say(f"  redis memory, {mem_n} tasks")
                        _set_workers(c, 0)
                        bulk = section("redis_memory.bulk", lambda: measure_bulk_memory(c, bare, mem_n, say))
                        if bulk:
                            res["redis_memory"]["bulk"] = bulk
                        _set_workers(c, 1)
                    rc.close()
                    if "latency" in wanted:
                        say("  submit latency, fallback mode (Redis stopped)")
                        lat = section("submit_latency.fallback",
                                      lambda: _fallback_latency(c, api, levels, reps, quick, say))
                        if lat and "skipped" in lat:
                            say(f"    skipped: {lat['skipped']}")
                        if lat:
                            res["submit_latency"]["fallback"] = lat
                finally:
                    bare.close()
                    api.close()

        # ---- cluster S: the submit path against a bare endpoint -----------------------------------------------
        if "submit" in wanted:
            from chaos.bench.submit import generator, measure_submit

            say(f"bench: cluster S (the target's own env, no workers: tasks only queue); load by {generator()} ...")
            with Cluster(target, backend="local", workers=0) as c:
                api = _Api(c, bp)
                try:
                    res["submit"] = section("submit", lambda: measure_submit(
                        api.url + api.http.submit_path, api.http.submit_method, api.body(), api.auth,
                        link_url(c, "api_redis"), api.http.token, tmp / "submit", levels=SUBMIT_LEVELS,
                        seconds=3.0 if quick else 8.0, repeats=1 if quick else 3, say=say)) or {"skipped": "failed"}
                finally:
                    api.close()

        # ---- cluster B: short tasks and recovery --------------------------------------------------------------
        if {"throughput", "recovery"} & set(wanted):
            say("bench: cluster B (the target's own env, 1 worker) on local ...")
            with Cluster(target, backend="local", workers=1) as c:
                api = _Api(c, bp)
                bare = BareWorkers(c, tmp / "bare-b")
                try:
                    if "throughput" in wanted:
                        work = "unknown" if bp.short_work_s is None else f"{bp.short_work_s * 1000:.0f} ms"
                        say(f"  throughput, short tasks ({bp.kind.name!r}, bare task {work})")
                        tp = section("throughput.short", lambda: measure_throughput(
                            c, api, bare, tput_n["short"], bp.short_work_s, wcounts, reps, say, "short",
                            bp.short_bare_skipped))
                        if tp:
                            res["throughput"]["short"] = tp
                    if "recovery" in wanted:
                        _set_workers(c, 2)
                        section("drain", lambda: _drain(c, api))
                        say("  recovery (2 workers)")
                        res["recovery"] = measure_recovery(c, api, rec_reps, section, say)
                finally:
                    bare.close()
                    api.close()

        # ---- the fault proxy, bring-up, gate -------------------------------------------------------------------
        if "proxy" in wanted:
            from chaos.bench.proxy import measure_proxy

            say("bench: the fault proxy on a Redis link without toxics (redis-benchmark, direct vs proxied) ...")
            res["proxy"] = section("proxy", lambda: measure_proxy(
                requests=10_000 if quick else 50_000, repeats=1 if quick else 3)) or {"skipped": "failed"}
        if "bring_up" in wanted:
            say(f"bench: bring-up of each backend (2 workers, {up_reps} run(s) each) ...")
            res["bring_up"]["local"] = section("bring_up.local", lambda: measure_bring_up(target, "local", up_reps))
            if docker:
                res["bring_up"]["docker"] = section(
                    "bring_up.docker", lambda: measure_docker_bring_up(target, up_reps, say, build=not quick))
            else:
                res["bring_up"]["docker"] = {"skipped": "not requested"}
            for k, v in res["bring_up"].items():
                if v and "seconds" in v:
                    say(f"    {k}: {v['seconds']:.2f}s (runs {v['runs']})")
            res["bring_up"] = {k: v for k, v in res["bring_up"].items() if v}
        if "gate" in wanted:
            say("bench: the default gate profile ...")
            res["gate"] = section("gate", lambda: _gate_wall(target, tmp / "gate", say)) or {"skipped": "failed"}
        else:
            res["gate"] = {"skipped": "--quick" if quick else "not requested"}
    except ChaosError as exc:
        errors["cluster"] = f"{type(exc).__name__}: {exc}"
        say(f"bench: could not run: {exc}")
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    res["wall_s"] = _r(time.monotonic() - t_all, 1)
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
    return 2 if errors else 0


def measure_recovery(c: Any, api: _Api, repeats: int, section: Callable[[str, Callable[[], Any]], Any],
                     say: Callable[[str], None]) -> dict[str, Any]:
    rec: dict[str, list[float]] = {"worker_sigkill_s": [], "redis_restart_s": [], "api_restart_s": [],
                                   "api_kill_to_serving_s": []}
    skipped: dict[str, str] = {}
    if not api.has_ledger:
        skipped["worker_sigkill_s"] = ("needs the target's ledger (http.ledger_path) to see which worker runs the "
                                       "task and when it runs again")
    for _ in range(repeats):
        if "worker_sigkill_s" not in skipped:
            v = section("recovery.worker_sigkill", lambda: recover_worker_sigkill(c, api))
            if v is not None:
                rec["worker_sigkill_s"].append(v)
            c.heal()
        v = section("recovery.redis_restart", lambda: recover_redis_restart(c, api))
        if v is not None:
            rec["redis_restart_s"].append(v)
        c.heal()
        v = section("recovery.api_kill", lambda: recover_api_kill(c, api))
        if v is not None:
            rec["api_restart_s"].append(v[0])
            rec["api_kill_to_serving_s"].append(v[1])
        c.heal()
    out: dict[str, Any] = {}
    for k, xs in rec.items():
        if k in skipped:
            out[k] = {"skipped": skipped[k]}
            say(f"    {k}: skipped ({skipped[k]})")
        elif xs:
            out[k] = {"median": _r(_median(xs), 3), "runs": [_r(x, 3) for x in xs]}
            say(f"    {k}: {_median(xs):.2f}s (runs {[round(x, 2) for x in xs]})")
    return out


def measure_bring_up(target: Target, backend: str, runs: int) -> dict[str, Any]:
    """Cluster start -> every node ready (redis, proxy, api, 2 workers), ``runs`` times; teardown not counted."""
    from chaos.cluster.cluster import Cluster

    secs = []
    for _ in range(runs):
        with Cluster(target, backend=backend, workers=2) as c:
            secs.append(float(c.bring_up_seconds or 0))
    return {"seconds": _r(_median(secs), 2), "runs": [_r(x, 2) for x in secs], "workers": 2}


def _gate_wall(target: Target, report_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from chaos.gate import Profile, run_gate
    from chaos.target import load_config

    cfg = load_config(target.root / "pyproject.toml") if (target.root / "pyproject.toml").is_file() else {}
    t0 = time.monotonic()
    outcome = run_gate(target, Profile.load("default", cfg), report_dir=report_dir, seed=1,
                       progress=lambda m: say(f"    {m}"))
    wall = time.monotonic() - t0
    say(f"    gate: exit {outcome.exit_code} in {wall:.0f}s")
    return {"wall_s": _r(wall, 1), "exit_code": outcome.exit_code, "scenarios": len(outcome.results)}


def measure_docker_bring_up(target: Target, runs: int, say: Callable[[str], None], build: bool) -> dict[str, Any]:
    """Docker bring-up; the target image is built first when missing (``build``), its build time reported apart."""
    try:
        from chaos.images import build_images, docker_client, find_target_image

        client = docker_client(timeout=10)
        try:
            tag = find_target_image(target, client)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any reason is a skip reason
        return {"skipped": f"no Docker daemon answers ({type(exc).__name__}: {str(exc)[:160]})"}
    build_s = None
    if tag is None:
        if not build:
            return {"skipped": "the target image for the current source tree is not built (chaos images build)"}
        say("    building the target image (chaos images build) ...")
        t0 = time.monotonic()
        try:
            tag = str(build_images(target)["target"])
        except Exception as exc:  # noqa: BLE001
            return {"skipped": f"the target image could not be built: {type(exc).__name__}: {str(exc)[:200]}"}
        build_s = _r(time.monotonic() - t0, 1)
    try:
        up = measure_bring_up(target, "docker", runs)
    except Exception as exc:  # noqa: BLE001
        return {"skipped": f"docker bring-up failed: {type(exc).__name__}: {str(exc)[:200]}"}
    return {**up, "image": tag, "image_build_s": build_s}


# ---------------------------------------------------------------------------------------------- output
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
        f"bare {v['bare']['rps']:.0f} req/s, p99 {v['bare']['p99_ms']} ms; ratio {v['ratio']}"))
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
