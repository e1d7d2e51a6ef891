"""The cluster's work as the bench waits on it: what Redis still holds, and draining it."""

from __future__ import annotations

from typing import Any

from chaos.bench.api import TargetApi
from chaos.bench.bare import BARE_QUEUE
from chaos.bench.polling import wait_for
from chaos.target import TERMINAL_STATES


def queue_backlog(cluster: Any) -> int:
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


def drain(cluster: Any, api: TargetApi | None, timeout: float = 180.0, broker: bool = True) -> None:
    """Wait until Redis holds no work and (given an API with a ledger) no task of the ledger is unfinished.

    After a worker SIGKILL its delivered message stays in kombu's ``unacked`` hash until the visibility timeout
    (a target's recovery may re-dispatch the task meanwhile), so after faults only the ledger is waited for.
    """
    if broker:
        wait_for(lambda: queue_backlog(cluster) == 0, timeout, "the broker queues to drain", 0.2)
    if api is not None and api.has_ledger:
        wait_for(lambda: all(t["state"] in TERMINAL_STATES for t in api.ledger()), timeout,
              "every task to finish", 0.5)
