"""Cheap, bounded health: a background pinger caches Redis reachability and a
refresher the live-worker count, so GET /health answers instantly even when
Redis is SIGSTOPped (a hung ping only costs a thread, never the request)."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from . import ledger
from .config import get_settings
from .publish import CircuitBreaker

log = logging.getLogger("service.health")


class HealthMonitor:
    """Redis is pinged from a thread of its own, every ``PERIOD``, each ping bounded by ``PING_TIMEOUT``: the
    event loop's lag under a burst of submits (hundreds of ms at 100 connections) must not read as an outage,
    and a paused Redis must not hold the loop. The live-worker count is refreshed on the loop."""

    PERIOD = 0.25
    PING_TIMEOUT = 0.2

    def __init__(self, breaker: CircuitBreaker, on_redis_back: Callable[[], None] | None = None) -> None:
        s = get_settings()
        self.breaker = breaker
        self.on_redis_back = on_redis_back
        self.client = redis.Redis.from_url(s.celery_broker_url, socket_timeout=self.PING_TIMEOUT,
                                           socket_connect_timeout=self.PING_TIMEOUT)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")
        self.redis_up = False
        self.answered_at = 0.0  # monotonic send time of the last ping Redis answered
        self.pinged_at = 0.0  # ... of the last ping that finished, answered or not
        self._wake = threading.Event()
        self.workers = 0
        self.checked_at = 0.0
        self._stop = threading.Event()
        self._pinger: threading.Thread | None = None
        self._task: asyncio.Task | None = None
        self._loop_ref: asyncio.AbstractEventLoop | None = None

    def ping_once(self) -> bool:
        """One bounded ping; trips the breaker when Redis does not answer."""
        sent = time.monotonic()
        try:
            up = bool(self.client.ping())
        except Exception:  # noqa: BLE001
            up = False
        was_up = self.redis_up if self.checked_at else None
        self.redis_up = up
        self.pinged_at = sent
        if up:
            self.answered_at = sent
        else:
            self.breaker.trip()
        if up and was_up is False and self.on_redis_back is not None and self._loop_ref is not None:
            self._loop_ref.call_soon_threadsafe(self.on_redis_back)
        return up

    def answered_since(self, t: float) -> bool | None:
        """Did Redis answer a ping sent at or after monotonic ``t``? None while no such ping has finished."""
        if self.answered_at >= t:
            return True
        return False if self.pinged_at >= t else None

    def ping_soon(self) -> None:
        """Ping now rather than at the next period (a publish waits on the answer)."""
        self._wake.set()

    def _ping_forever(self) -> None:
        while not self._stop.is_set():
            self.ping_once()
            self._wake.wait(self.PERIOD)
            self._wake.clear()

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_ref = loop
        if self._pinger is None:  # before serving: one ping decides the start-up mode
            await loop.run_in_executor(self.pool, self.ping_once)
        try:
            self.workers = await asyncio.wait_for(loop.run_in_executor(self.pool, ledger.live_workers), 0.25)
        except Exception:  # noqa: BLE001 - keep the last known count
            pass
        self.checked_at = time.time()

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("health refresh failed")
            await asyncio.sleep(self.PERIOD)

    def start(self) -> None:
        self._loop_ref = asyncio.get_running_loop()
        self._pinger = threading.Thread(target=self._ping_forever, name="health-ping", daemon=True)
        self._pinger.start()
        self._task = self._loop_ref.create_task(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task:
            self._task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> dict:
        mode = "celery" if self.redis_up and not self.breaker.is_open else "fallback"
        ok = self.redis_up and self.workers > 0 and mode == "celery"
        return {"status": "ok" if ok else "degraded", "redis": "up" if self.redis_up else "down",
                "workers": self.workers, "mode": mode}
