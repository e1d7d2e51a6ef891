"""Redis memory: used_memory before and after tasks, and what a backlog of queued tasks costs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from chaos.bench.bare import BareWorkers
from chaos.bench.broker import queue_backlog
from chaos.bench.figures import rounded
from chaos.bench.polling import wait_for


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])



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
        wait_for(lambda: queue_backlog(cluster) == 0, 120, "an empty broker", 0.2)
        before = used_memory(r)
        t0 = time.monotonic()
        with bare.producer(direct=True).producer_or_acquire() as producer:
            for _ in range(backlog):
                bare.send(key, 0.0, direct=True, producer=producer)
            queued_bytes = used_memory(r)
            sent = backlog
            bare.start(2, 1, prefetch=64, direct=True, pool="solo", loglevel="warning")
            try:
                while sent < n:
                    k = min(batch, n - sent)
                    for _ in range(k):
                        bare.send(key, 0.0, direct=True, producer=producer)
                    sent += k
                    floor = sent - 2 * batch
                    wait_for(lambda: done() >= floor, 600, "the bulk backlog to shrink", 0.05)  # noqa: B023
                wait_for(lambda: done() >= n, 600, "every bulk task to finish", 0.05)
                wait_for(lambda: queue_backlog(cluster) == 0, 60, "an empty broker", 0.1)
            finally:
                bare.stop()
        secs = time.monotonic() - t0
        r.delete(key)
        after = used_memory(r)
    finally:
        r.close()
    say(f"    {n} bulk tasks in {secs:.0f}s ({n / secs:.0f}/s): used_memory {before} -> {after} B; "
        f"{queued_bytes} B with {backlog} queued")
    return {"tasks": n, "via": "bare Celery (send_task to celery -A workers on the same Redis, directly, not "
                               "through the fault proxy; 2 solo-pool workers, prefetch 64)",
            "before_bytes": before, "after_bytes": after, "bytes_per_task": rounded((after - before) / n, 3),
            "queued_tasks": backlog, "queued_bytes": queued_bytes,
            "bytes_per_queued_task": rounded((queued_bytes - before) / backlog, 1),
            "seconds": rounded(secs, 1), "tasks_per_s": rounded(n / secs, 1)}
