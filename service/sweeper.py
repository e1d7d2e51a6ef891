"""Recovery sweeper: re-dispatch work whose runner died, within seconds.

Runs in every API process as an asyncio task, but only the holder of the
``sweeper`` DB lock acts (leader election by a row lease).  Each pass:

a) STARTED celery tasks with an expired lease -> RETRY and republish;
b) PENDING/RETRY celery tasks not dispatched for LEASE_SECONDS that are in no
   Redis queue list (incl. priority sub-queues) and not delivered recently
   (kombu ``unacked``/``unacked_index``) -> republish (same task id);
c) orphaned fallback tasks (PENDING/RETRY or STARTED with expired lease)
   -> run them in this API's fallback runner;
d) if Redis has been unreachable for 2*LEASE_SECONDS, stale celery tasks are
   adopted into fallback mode so nothing waits for the outage to end.
Duplicated deliveries are harmless: the claim fences them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time

import redis

from . import ledger
from .celery_app import PRIORITY_STEPS, QUEUE, QUEUE_SEP
from .config import get_settings
from .publish import FallbackRunner, Publisher

log = logging.getLogger("service.sweeper")

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"


def queue_keys() -> list[str]:
    return [QUEUE if step == 0 else f"{QUEUE}{QUEUE_SEP}{step}" for step in PRIORITY_STEPS]


# The task id header as kombu's JSON envelope spells it. Found with a regex first: parsing every queued message
# each sweep cost the API about 9% of its CPU with a backlog of a few thousand ("correlation_id", "root_id" and
# "parent_id" cannot match: a quote must open the key).
_ID = re.compile(rb'"id": ?"([^"\\]+)"')


def _msg_id(raw: bytes | str) -> str | None:
    m = _ID.search(raw if isinstance(raw, bytes) else raw.encode())
    if m is not None:
        return m.group(1).decode()
    try:
        msg = json.loads(raw)
        if isinstance(msg, list):  # unacked hash value: [message, exchange, routing_key]
            msg = msg[0]
        return (msg.get("headers") or {}).get("id") or (msg.get("properties") or {}).get("correlation_id")
    except Exception:  # noqa: BLE001 - foreign message in our queue
        return None


# (b) and (d) read every waiting task and every queued message: with a backlog of thousands (an API that takes
# submits faster than its workers run them) that took most of a sweep and a third of the API's throughput.
# They run again only when their last look's CPU time is at most this share of the time since: every pass (0.5 s)
# with a small backlog, every few seconds with tens of thousands queued, which are not running soon anyway.
WAITING_LOOK_SHARE = 0.05


# A queue list read again from the head only where it grew: kombu LPUSHes new messages at the head and workers
# pop the oldest at the tail, so while nothing was popped, what the last look read is still there, below the
# messages pushed since. The script (atomic in Redis) checks that: the same oldest message at the tail and the
# last look's newest one right below the new part; else (a pop, a restore, a Redis that lost or gained messages
# in a restart) it returns the whole list. Reading a backlog of tens of thousands on every look cost the API
# several per cent of its throughput, and the Redis link and Redis itself as much again.
_READ_NEW = """
local n = redis.call('LLEN', KEYS[1])
local prev = tonumber(ARGV[1])
if prev > 0 and n >= prev and redis.call('LINDEX', KEYS[1], -1) == ARGV[2]
    and redis.call('LINDEX', KEYS[1], n - prev) == ARGV[3] then
  if n == prev then return {1, n, {}} end
  return {1, n, redis.call('LRANGE', KEYS[1], 0, n - prev - 1)}
end
return {0, n, redis.call('LRANGE', KEYS[1], 0, -1)}
"""
FULL_LOOK_SECONDS = 30.0  # every list is read whole at least this often, whatever the checks say


class QueueList:
    """One queue list as the last look left it: the ids it holds, its length, its oldest and newest message."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.length = 0
        self.oldest = self.newest = b""

    def args(self) -> list[int | bytes]:
        return [self.length, self.oldest, self.newest]

    def update(self, incremental: int, length: int, new: list[bytes]) -> None:
        """``new``: the messages pushed since (``incremental``) or the whole list, newest first."""
        if not incremental:
            self.ids, self.oldest = set(), (new[-1] if new else b"")
        self.ids.update(i for i in map(_msg_id, new) if i)
        self.length = length
        if new:
            self.newest = new[0]
        elif not incremental:
            self.newest = b""


class BrokerView:
    """What Redis currently holds for our queue: queued ids, and ids delivered < ``recent`` s ago."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.read_new = self.client.register_script(_READ_NEW)
        self.lists = {k: QueueList() for k in queue_keys()}
        self._next_full = 0.0  # monotonic
        self.reads = {"new": 0, "whole": 0, "empty": 0}  # list reads by kind: how often a look read less

    def snapshot(self, recent: float) -> tuple[set[str], set[str]]:
        if time.monotonic() >= self._next_full:
            self.lists = {k: QueueList() for k in queue_keys()}
            self._next_full = time.monotonic() + FULL_LOOK_SECONDS
        pipe = self.client.pipeline(transaction=False)
        for key, seen in self.lists.items():
            self.read_new(keys=[key], args=seen.args(), client=pipe)
        pipe.hgetall(UNACKED)
        pipe.zrangebyscore(UNACKED_INDEX, time.time() - recent, "+inf")
        try:
            res = pipe.execute()
        except redis.RedisError:
            self._next_full = 0.0  # the next look reads everything again
            raise
        queued: set[str] = set()
        for seen, (incremental, length, new) in zip(self.lists.values(), res[:-2], strict=True):
            seen.update(incremental, length, new)
            self.reads["new" if incremental else "whole" if length else "empty"] += 1
            queued |= seen.ids
        unacked_all, recent_tags = res[-2], set(res[-1])
        delivered = {i for tag, raw in unacked_all.items() if tag in recent_tags and (i := _msg_id(raw))}
        return queued, delivered

    def ping(self) -> bool:
        return bool(self.client.ping())


class Sweeper:
    def __init__(self, publisher: Publisher, runner: FallbackRunner) -> None:
        self.s = get_settings()
        self.publisher, self.runner = publisher, runner
        self.name = f"api@{socket.gethostname()}:{os.getpid()}"
        self.broker = BrokerView(self.s.celery_broker_url)
        self.redis_down_since: float | None = None
        self._next_waiting_look = 0.0  # monotonic: when (b) and (d) may read the waiting tasks again
        self._task: asyncio.Task | None = None
        self.is_leader = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.is_leader:
            try:
                await asyncio.to_thread(ledger.release_lock, "sweeper", self.name)
            except Exception:  # noqa: BLE001
                pass

    async def _loop(self) -> None:
        ttl = max(3 * self.s.sweep_interval_seconds, 2.0)
        while True:
            try:
                self.is_leader = await asyncio.to_thread(ledger.try_lock, "sweeper", self.name, ttl)
                if self.is_leader:
                    fallback_ids = await asyncio.wait_for(asyncio.to_thread(self.sweep_once), timeout=30)
                    for tid in fallback_ids:
                        self.runner.schedule(tid)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let the sweeper die
                log.exception("sweep failed")
            await asyncio.sleep(self.s.sweep_interval_seconds)

    def _republish(self, rows: list[tuple[str, int]]) -> None:
        """``rows``: (task id, priority), in the order to publish them."""
        sent = [tid for tid, priority in rows if self.publisher.publish_blocking(tid, priority)]
        if sent:
            ledger.mark_dispatched(sent)
            log.info("republished %d task(s): %s", len(sent), sent[:10])

    def sweep_once(self) -> list[str]:
        """One pass (blocking; run in a thread).  Returns fallback task ids to run here.

        Canary knobs: ``RECOVERY_SWEEPER=off`` skips (a) and (b); ``FALLBACK=off`` skips (c) and (d);
        ``FALLBACK_STORE=memory`` skips (c) (only tasks adopted in this pass are returned)."""
        lease = self.s.lease_seconds
        recover, fallback = self.s.recovery_sweeper, self.s.fallback
        if recover:
            expired = ledger.expire_leases(ledger.CELERY)
            if expired:
                log.info("lease expired for %d task(s): %s", len(expired), [r["task_id"] for r in expired][:10])
                self._republish([(r["task_id"], r["priority"]) for r in expired])

        adopted: list[str] = []
        began, cpu = time.monotonic(), time.thread_time()
        due = (recover or fallback) and began >= self._next_waiting_look
        waiting = ledger.waiting_tasks(ledger.CELERY, dispatched_before=time.time() - lease) if due else []
        if waiting:
            try:
                queued, delivered = self.broker.snapshot(recent=lease)
                self.redis_down_since = None
                lost = [r for r in waiting if r.task_id not in queued and r.task_id not in delivered]
                if lost and recover:  # the most urgent first, then the oldest
                    lost.sort(key=lambda r: (-r.priority, r.created_at))
                    self._republish([(r.task_id, r.priority) for r in lost])
            except redis.RedisError as exc:
                now = time.time()
                self.redis_down_since = self.redis_down_since or now
                log.warning("sweeper cannot inspect Redis (%r)", exc)
                if fallback and now - self.redis_down_since >= 2 * lease:
                    waiting.sort(key=lambda r: (-r.priority, r.created_at))
                    adopted = [r.task_id for r in waiting if ledger.adopt_into_fallback(r.task_id)]
                    if adopted:
                        log.warning("Redis down for %.1fs: adopted %d task(s) into fallback",
                                    now - self.redis_down_since, len(adopted))
        elif due:
            self.redis_down_since = None
        if due:  # the next look once this one's CPU (not its wait on a Redis that is away) is a small share
            self._next_waiting_look = began + (time.thread_time() - cpu) / WAITING_LOOK_SHARE
        if not fallback:
            return []
        if self.s.fallback_store == "memory":  # orphaned fallback tasks are forgotten, as if kept in memory
            return adopted
        return ledger.recoverable_fallback()
