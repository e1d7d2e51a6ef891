"""Bare Celery: the baseline app (written to a temp dir) and its workers, started and always killed by us.

A target's own task cannot serve as its baseline in general (it may need state the API writes first), so the
baseline is a tiny Celery app with the same settings as the target's workers (prefetch, acks_late, priorities)
on the same Redis through the same fault-proxy links.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from chaos.bench.polling import wait_for
from chaos.cluster.cleanup import mark
from chaos.errors import ChaosError

BARE_QUEUE = "bench_bare"
BARE_TASK = "bench.bare"

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


class BareWorkers:
    """``celery -A bench_bare_app worker`` processes we start and always kill (by pid group)."""

    def __init__(self, cluster: Any, workdir: Path) -> None:
        self.c = cluster
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "bench_bare_app.py").write_text(BARE_APP)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.broker_url = cluster.link_url("workers_redis")  # the workers' proxy link, as theirs
        self.producer_url = cluster.link_url("api_redis")  # the API's proxy link, as the API's
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
            wait_for(ready, 60, "a bare Celery worker to be ready", 0.1)

    def stop(self, patience: float = 10.0) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for what is left after ``patience`` s. Killed at once, a worker
        that had just run its last task had not always sent its ack: the message stayed in kombu's unacked hash
        and the next drain waited for it until it timed out."""
        for p, _ in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for p, _ in self.procs:
            try:
                p.wait(patience)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the pool children too, whatever the main process did
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
