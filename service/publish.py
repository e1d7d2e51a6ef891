"""Bounded publishing with a circuit breaker, and the asyncio fallback runner.

``Publisher.try_publish`` LPUSHes the task message on the event loop
(``service/wire.py``) under ``asyncio.wait_for(PUBLISH_TIMEOUT_MS)`` with short
socket timeouts (another broker: ``send_task`` in a thread pool, ``retry=False``); after any failure the breaker stays open for
``BREAKER_OPEN_SECONDS`` so submits during an outage go straight to fallback.

``FallbackRunner`` runs tasks in-process (claim with mode=fallback, the work
itself in a bounded thread pool) when the broker is unavailable.  Its rows are
durable: on API start and in the sweeper, orphaned fallback tasks are resumed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from . import ledger
from .celery_app import QUEUE, SYNC_TASK, app, configure_for_api, redis_priority
from .config import get_settings
from .sync import run_attempt
from .wire import AsyncSender

if TYPE_CHECKING:
    from .health import HealthMonitor

log = logging.getLogger("service.publish")


class CircuitBreaker:
    """Open for ``open_seconds`` after a broker error.  A publish *timeout* alone may just be a
    busy process (GIL, 100 concurrent submits), so it trips only after ``TIMEOUTS_TO_TRIP`` in a
    row; the health monitor's bounded Redis ping trips it too (paused or dead Redis)."""

    TIMEOUTS_TO_TRIP = 3

    def __init__(self, open_seconds: float) -> None:
        self.open_seconds = open_seconds
        self.open_until = 0.0
        self.timeouts = 0

    def record_success(self) -> None:
        self.timeouts = 0

    def record_timeout(self) -> None:
        self.timeouts += 1
        if self.timeouts >= self.TIMEOUTS_TO_TRIP:
            self.timeouts = 0
            self.trip()

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def trip(self) -> None:
        self.open_until = time.monotonic() + self.open_seconds

    def reset(self) -> None:
        self.open_until = 0.0


# Celery's own default publish retry policy (used when PUBLISH_TIMEOUT_MS=0 turns the bound off).
CELERY_DEFAULT_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


class Publisher:
    """``PUBLISH_TIMEOUT_MS=0`` (a canary knob) is the unbounded publish: no ``wait_for``, kombu's default
    socket timeouts, Celery's default publish retries and no circuit breaker, so a submit waits for Redis."""

    def __init__(self) -> None:
        s = get_settings()
        configure_for_api()
        self.bounded = s.publish_bounded
        self.durable_revoke = s.durable_revoke
        self.timeout = s.publish_timeout_ms / 1000.0
        self.breaker = CircuitBreaker(s.breaker_open_seconds)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="publish")
        self.control_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="revoke")
        # bounded publishing goes out on the event loop (service/wire.py; redis-py takes every Redis URL the
        # config accepts); the unbounded canary goes through send_task in the thread pool
        url = str(app.conf.broker_url or "")
        self._background: set[asyncio.Task] = set()
        self.health: HealthMonitor | None = None  # set in main.py: tells a late publish from an outage
        self.sender = AsyncSender(url, s.api_broker_socket_timeout) if self.bounded else None

    def _send(self, task_id: str, priority: int) -> None:
        policy = {} if self.bounded else {"retry_policy": CELERY_DEFAULT_RETRY_POLICY}
        app.send_task(SYNC_TASK, args=[task_id], task_id=task_id, queue=QUEUE, routing_key=QUEUE,
                      priority=redis_priority(priority), ignore_result=True, retry=not self.bounded, **policy)

    def publish_blocking(self, task_id: str, priority: int) -> bool:
        """For the sweeper (already off the event loop)."""
        if self.bounded and self.breaker.is_open:
            return False
        fut = self.pool.submit(self._send, task_id, priority)
        try:
            fut.result(timeout=max(self.timeout, 0.5) if self.bounded else None)
            return True
        except Exception as exc:  # noqa: BLE001 - includes TimeoutError
            log.warning("republish of %s failed: %r", task_id, exc)
            self.breaker.trip()
            return False

    async def try_publish(self, task_id: str, priority: int) -> str | None:
        """Publish once; None when sent, else why not (breaker open, timeout, broker error)."""
        loop = asyncio.get_running_loop()
        if not self.bounded:
            try:
                await loop.run_in_executor(self.pool, self._send, task_id, priority)
                return None
            except Exception as exc:  # noqa: BLE001
                log.warning("publish of %s failed (%r)", task_id, exc)
                return f"publish failed: {type(exc).__name__}: {exc}"
        if self.breaker.is_open:
            return "broker circuit breaker open (Redis recently unreachable)"
        # The LPUSH is awaited in this task itself (a task and a wait per submit cost more than the send); a
        # timer at the bound decides and, for an outage, cancels this task's wait.
        started = time.monotonic()
        me = asyncio.current_task()
        verdict: list[str] = []

        def past_bound() -> None:
            # Past the bound: an outage, or only this loop's lag under a burst of submits? A ping sent after
            # this publish began tells: answered, wait on (up to LAG_CAP_S); not yet, ask for one.
            nonlocal timer
            answered = self.health.answered_since(started) if self.health is not None else False
            if answered is None:
                self.health.ping_soon()  # type: ignore[union-attr]
            if answered is False or time.monotonic() - started >= self.LAG_CAP_S:
                verdict.append(f"publish timed out after {self.timeout * 1000:.0f} ms")
                me.cancel()  # type: ignore[union-attr]
            else:
                timer = loop.call_later(self.timeout, past_bound)

        timer = loop.call_later(self.timeout, past_bound)
        try:
            await self.sender.send(task_id, priority)  # type: ignore[union-attr] - bounded: always a sender
            self.breaker.record_success()
            return None
        except asyncio.CancelledError:
            if not verdict:
                raise  # not ours: the request itself is going away
            if hasattr(me, "uncancel"):
                me.uncancel()  # type: ignore[union-attr]
            log.warning("publish of %s timed out after %.0f ms", task_id, self.timeout * 1000)
            self.breaker.record_timeout()
            return verdict[0]
        except Exception as exc:  # noqa: BLE001 - OperationalError, ConnectionError...
            log.warning("publish of %s failed (%r)", task_id, exc)
            self.breaker.trip()
            return f"publish failed: {type(exc).__name__}: {exc}"
        finally:
            timer.cancel()

    WARM_CONNECTIONS = 8  # kombu producers (the sweeper's send_task): within its pool of 10
    # the submits' own LPUSH pool: a burst's LPUSHes (one per priority list and loop turn, service/wire.py) pay
    # no connect through the links; the first burst of 100 after a start took 134-156 ms, warm ones 96-153 ms
    WARM_LPUSH_CONNECTIONS = 32
    LAG_CAP_S = 0.5  # the longest a publish waits on a Redis that answers pings (below the 0.8 s outage bound)

    def _warm_blocking(self) -> None:
        from contextlib import ExitStack
        with ExitStack() as stack:  # hold N producers at once so N distinct connections get opened
            for _ in range(self.WARM_CONNECTIONS):
                producer = stack.enter_context(app.producer_or_acquire())
                producer.maybe_declare(app.amqp.queues[QUEUE])
                producer.channel.client.ping()

    async def warm_up(self, connect: bool = True) -> None:
        """Open (and declare on) several producer connections before serving, so a burst of
        concurrent submits doesn't pay connection set-up inside its PUBLISH_TIMEOUT_MS budget."""
        app.backend, app.amqp.router  # noqa: B018 - lazy imports cost ~40 ms on the first send_task
        if not connect:
            return
        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self.pool, self._warm_blocking), 3.0)
            if self.sender is not None:
                await asyncio.wait_for(self.sender.warm(self.WARM_LPUSH_CONNECTIONS), 3.0)
        except Exception as exc:  # noqa: BLE001
            log.warning("broker warm-up failed: %r", exc)

    def rewarm_in_background(self) -> None:
        """Redis came back: refresh pooled connections off the request path (called on the event loop)."""
        try:
            self.pool.submit(self._rewarm_quietly)
        except RuntimeError:
            pass
        if self.sender is not None:
            task = asyncio.get_running_loop().create_task(self._rewarm_sender())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _rewarm_sender(self) -> None:
        try:
            await asyncio.wait_for(self.sender.warm(self.WARM_LPUSH_CONNECTIONS), 3.0)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            log.info("broker re-warm failed: %r", exc)

    def _rewarm_quietly(self) -> None:
        try:
            self._warm_blocking()
        except Exception as exc:  # noqa: BLE001
            log.info("broker re-warm failed: %r", exc)

    def revoke_best_effort(self, task_id: str) -> None:
        """Fire-and-forget ``control.revoke``; durability comes from the DB, never block on it.
        (With ``DURABLE_REVOKE=off`` this message is the whole cancel, so it is sent even with the breaker open.)"""
        if self.durable_revoke and self.breaker.is_open:
            return
        try:
            self.control_pool.submit(self._revoke, task_id)
        except RuntimeError:
            pass

    @staticmethod
    def _revoke(task_id: str) -> None:
        try:
            app.control.revoke(task_id)
        except Exception as exc:  # noqa: BLE001
            log.info("best-effort revoke of %s failed: %r", task_id, exc)

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.control_pool.shutdown(wait=False, cancel_futures=True)
        if self.sender is not None:
            await self.sender.close()


class FallbackRunner:
    def __init__(self) -> None:
        s = get_settings()
        self.concurrency = s.fallback_concurrency
        self.pool = ThreadPoolExecutor(max_workers=s.fallback_concurrency, thread_name_prefix="fallback")
        self.sem = asyncio.Semaphore(s.fallback_concurrency)
        # "api@host:pid": the part before "@" names the node (as "worker-0@host" does for workers), so
        # an observer can tie a fallback execution to the API process that ran it.
        self.name = f"api@{socket.gethostname()}:{os.getpid()}"
        self.stop = threading.Event()
        self.inflight: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    def schedule(self, task_id: str) -> None:
        if task_id in self.inflight or self.stop.is_set():
            return
        self.inflight.add(task_id)
        t = asyncio.get_running_loop().create_task(self._run(task_id))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _run(self, task_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self.sem:
                if self.stop.is_set():
                    return
                claimed = await loop.run_in_executor(
                    self.pool, lambda: ledger.claim(task_id, self.name, os.getpid(), ledger.FALLBACK))
                if claimed is None:
                    return
                attempt, file_id = claimed
                await loop.run_in_executor(self.pool, run_attempt, task_id, attempt, file_id, self.stop)
        except Exception:  # noqa: BLE001 - lease expiry / sweeper will pick it up again
            log.exception("fallback run of %s crashed", task_id)
        finally:
            self.inflight.discard(task_id)

    async def resume_orphans(self) -> int:
        ids = await asyncio.to_thread(ledger.recoverable_fallback)
        for tid in ids:
            self.schedule(tid)
        return len(ids)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop at the next row; interrupted attempts go back to RETRY for the next API."""
        self.stop.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        self.pool.shutdown(wait=False, cancel_futures=True)
