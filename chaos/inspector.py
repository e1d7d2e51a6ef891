"""Where is each unfinished task? A read-only look into Redis (kombu's queues and unacked set, Celery's result
keys) and into the worker probe's records, so a finding can say where a task went instead of "not terminal".

kombu's Redis transport keeps a queue as a list named after it, with priority sub-queues ``name\\x06\\x16N``;
a message a worker has taken under ``acks_late`` is in the ``unacked`` hash (by delivery tag) with its time in
the ``unacked_index`` sorted set, until it is acknowledged or restored after the visibility timeout. A message
taken under Celery's default ``acks_late = False`` is acknowledged at once: from then on only the worker holding
it in memory knows it, which the probe's ``task_received`` record says (and whether that worker process is still
the one running).

Locations, most precise first: ``running`` (a live worker process started it and has not finished), ``held``
(received by a live worker, not started: prefetched), ``unacked`` (in kombu's unacked set, with since when),
``queued`` (in a queue list: queue, priority, position), ``finished`` (the result backend has a ready state), or
``gone`` (none of these: no queue, not unacked, no live worker holds it). Reads are bounded (``max_items``) and go
to Redis directly, never through a faulted proxy link.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = range(1, 10)
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
RESULT_KEY = "celery-task-meta-{}"
READY = ("SUCCESS", "FAILURE", "REVOKED")
CELERY_VISIBILITY_S = 3600.0  # kombu's Redis transport default


@dataclass(frozen=True)
class Location:
    """Where one task is: ``where`` is running | held | unacked | queued | finished | gone."""

    where: str
    detail: str  # plain words, for the report
    queue: str | None = None
    priority: int | None = None
    position: int | None = None
    since: float | None = None  # epoch: unacked since, running since, received at
    worker: str | None = None
    state: str | None = None  # finished: the result backend's state, and its exception type
    exception: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _task_id(raw: bytes | str) -> str | None:
    """The Celery task id of a kombu message (protocol 2: ``headers.id``; protocol 1: the body's ``id``)."""
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if isinstance(msg, list) and msg:  # an unacked entry: [message, exchange, routing_key]
        msg = msg[0]
    if not isinstance(msg, Mapping):
        return None
    headers = msg.get("headers") or {}
    if isinstance(headers, Mapping) and headers.get("id"):
        return str(headers["id"])
    return None


def broker_view(client: Any, queues: Iterable[str], max_items: int = 20_000) -> dict[str, dict[str, Any]]:
    """task id -> {"queued": (queue, priority, position)} or {"unacked": since} from one pass over Redis."""
    seen: dict[str, dict[str, Any]] = {}
    for queue in queues:
        for priority, key in [(0, queue), *((p, f"{queue}{PRIORITY_SEP}{p}") for p in PRIORITY_STEPS)]:
            n = int(client.llen(key) or 0)
            if not n:
                continue
            # kombu pushes with LPUSH and takes with BRPOP: the right end goes first, position 0
            items = client.lrange(key, max(0, n - max_items), -1)
            for pos, raw in enumerate(reversed(items)):
                tid = _task_id(raw)
                if tid is not None:
                    seen.setdefault(tid, {"queued": (queue, priority, pos)})
    if int(client.hlen(UNACKED) or 0) <= max_items:
        index = {(k.decode() if isinstance(k, bytes) else str(k)): float(v)
                 for k, v in client.zrange(UNACKED_INDEX, 0, -1, withscores=True)}
        for tag, raw in (client.hgetall(UNACKED) or {}).items():
            tid = _task_id(raw)
            if tid is not None:
                tag_s = tag.decode() if isinstance(tag, bytes) else str(tag)
                seen[tid] = {"unacked": index.get(tag_s)}
    return seen


def result_states(client: Any, task_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """(state, exception type) Celery's Redis result backend holds for each id (ids without a key left out)."""
    if not task_ids:
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for tid, raw in zip(task_ids, client.mget([RESULT_KEY.format(t) for t in task_ids]), strict=True):
        if raw is None:
            continue
        try:
            meta = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if isinstance(meta, Mapping) and meta.get("status"):
            result = meta.get("result")
            exc = result.get("exc_type") if isinstance(result, Mapping) else None
            out[tid] = (str(meta["status"]), None if exc is None else str(exc))
    return out


def probe_holders(records: Mapping[str, Any] | None,
                  live: Mapping[str, tuple[int, set[int]] | None]) -> dict[str, Location]:
    """From the worker probe: tasks a live worker process is running, or holds (received, not started).

    ``live``: node -> (its main process's pid, its pool children's pids) *now*, in the probe's terms (the
    container's pid namespace on docker), or None when it is dead. A task received by an earlier process of the
    node (killed, restarted) is held by nobody.
    """
    found: dict[str, Location] = {}
    if not records:
        return found
    started_after: dict[str, float] = {}
    for task in records.get("tasks") or []:
        tid = str(task.get("task_id"))
        for e in task.get("executions") or []:
            started_after[tid] = max(started_after.get(tid, 0.0), float(e.get("started_at") or 0.0))
            now = live.get(str(e.get("node") or ""))
            if e.get("finished_at") is None and now is not None and e.get("pid") in (now[1] | {now[0]}):
                found[tid] = Location("running", f"running on {e.get('node')} (pid {e.get('pid')})",
                                      since=e.get("started_at"), worker=str(e.get("node")))
    for rec in records.get("records") or []:
        if rec.get("event") != "task_received":
            continue
        tid, node = str(rec.get("task_id")), str(rec.get("node") or "")
        now = live.get(node)
        if tid in found or now is None or rec.get("pid") != now[0]:
            continue
        if started_after.get(tid, 0.0) < float(rec.get("t") or 0.0):  # taken, and not started since
            found[tid] = Location("held", f"taken by {node} (pid {now[0]}) and not started: prefetched in its "
                                  "memory", since=rec.get("t"), worker=node)
    return found


def visibility_timeout(workers: Mapping[str, Mapping[str, Any]] | None) -> float | None:
    """The shortest visibility timeout the workers run with (the ``settings`` their probe reported at
    worker_ready: kombu's default of one hour where the app sets none); None when no worker reported any (the
    probe is not loaded)."""
    found = [float(s.get("visibility_timeout") or CELERY_VISIBILITY_S)
             for w in (workers or {}).values() if isinstance(s := w.get("settings"), Mapping)]
    return min(found) if found else None


def locate(cluster: Cluster, task_ids: list[str], records: Mapping[str, Any] | None = None) -> dict[str, Location]:
    """Where each of ``task_ids`` is now (see the module docstring); needs Redis up. ``records``: the worker
    probe's (``chaos.probe.read_cluster(cluster, include_records=True)``), read here when not given; the
    workers' visibility timeout comes from them."""
    if records is None:
        from chaos.probe import read_cluster

        records = read_cluster(cluster, include_records=True)
    visibility = visibility_timeout((records or {}).get("workers"))
    from chaos.probe import namespace_pid

    assert cluster.redis is not None
    client = cluster.redis.client(timeout=2.0)
    try:
        broker = broker_view(client, cluster.target.queues)
        states = result_states(client, task_ids)
    finally:
        client.close()
    live: dict[str, tuple[int, set[int]] | None] = {}
    for w in cluster.workers:
        pids = [namespace_pid(p) or p for p in w.pids()] if w.alive() else []
        live[w.name] = (pids[0], set(pids[1:])) if pids else None
    holders = probe_holders(records, live)
    out: dict[str, Location] = {}
    for tid in task_ids:
        b = broker.get(tid, {})
        if tid in holders:
            out[tid] = holders[tid]
        elif "unacked" in b:
            since = b["unacked"]
            vis = (f"; it is restored to its queue once the visibility_timeout ({visibility:g} s) has passed "
                   f"and a restore sweep runs" if visibility else "; it is restored to its queue only after "
                   "the visibility_timeout (1 hour by Celery's default) and a restore sweep")
            out[tid] = Location("unacked", "in kombu's unacked set (taken by a worker under acks_late, never "
                                "acknowledged)" + vis, since=since)
        elif "queued" in b:
            queue, priority, pos = b["queued"]
            out[tid] = Location("queued", f"waiting in queue {queue!r} (priority {priority}, position {pos}): no "
                                "worker took it", queue=queue, priority=priority, position=pos)
        elif tid in states and states[tid][0] in READY:
            state, exc = states[tid]
            out[tid] = Location("finished", f"finished: the result backend says {state}"
                                + (f" ({exc})" if exc else ""), state=state, exception=exc)
        else:
            out[tid] = Location("gone", "in no queue, not in the unacked set, held by no live worker: the message "
                                "is gone" + (f" (the result backend says {states[tid][0]})" if tid in states else ""))
    return out
