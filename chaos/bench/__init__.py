"""``chaos bench``: latency, throughput, recovery and Redis memory of a target, measured on one machine in one run.

The package is one module per measurement (``latency``, ``throughput``, ``memory``, ``recovery``,
``wall_times``, and ``submit``/``proxy``), the bench table (``config``), the target's API as the bench uses it
(``api``), bare Celery (``bare``), the run (``run``) and its table (``table``); this module re-exports the
public names.

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

from chaos.bench.api import TargetApi
from chaos.bench.bare import BARE_APP, BARE_QUEUE, BARE_TASK, BareWorkers
from chaos.bench.config import BENCH_TABLE, BenchConfig, BenchPlan, bench_config, load_bench_config, plan
from chaos.bench.latency import MAX_SOCKETS, measure_latency
from chaos.bench.machine import machine_info
from chaos.bench.memory import measure_bulk_memory
from chaos.bench.recovery import measure_recovery
from chaos.bench.run import SCHEMA, SECTIONS, SUBMITTING, BenchOptions, parse_sections, run_bench
from chaos.bench.table import render_table
from chaos.bench.throughput import api_throughput, bare_throughput, measure_throughput
from chaos.bench.wall_times import measure_bring_up, measure_docker_bring_up

__all__ = [
    "BARE_APP", "BARE_QUEUE", "BARE_TASK", "BENCH_TABLE", "MAX_SOCKETS", "SCHEMA", "SECTIONS", "SUBMITTING",
    "BareWorkers", "BenchConfig", "BenchOptions", "BenchPlan", "TargetApi", "api_throughput", "bare_throughput",
    "bench_config", "load_bench_config", "machine_info", "measure_bring_up", "measure_bulk_memory",
    "measure_docker_bring_up", "measure_latency", "measure_recovery", "measure_throughput", "parse_sections", "plan",
    "render_table", "run_bench",
]
