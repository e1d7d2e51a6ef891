"""Cheap, bounded health: a background refresher caches Redis reachability and
the live-worker count, so GET /health answers instantly even when Redis is
SIGSTOPped (a hung ping only costs a thread, never the request)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from . import ledger
from .config import get_settings
from .publish import CircuitBreaker

log = logging.getLogger("service.health")


class HealthMonitor:
    PERIOD = 0.25
    PING_TIMEOUT = 0.2

    def __init__(self, breaker: CircuitBreaker, on_redis_back: Callable[[], None] | None = None) -> None:
        s = get_settings()
        self.breaker = breaker
        self.on_redis_back = on_redis_back
        self.client = redis.Redis.from_url(s.celery_broker_url, socket_timeout=self.PING_TIMEOUT,
                                           socket_connect_timeout=self.PING_TIMEOUT)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")
        self.redis_up = False
        self.workers = 0
        self.checked_at = 0.0
        self._ping_inflight = False
        self._task: asyncio.Task | None = None

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001
            return False
        finally:
            self._ping_inflight = False

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        was_up = self.redis_up if self.checked_at else None
        if not self._ping_inflight:
            self._ping_inflight = True
            try:
                self.redis_up = await asyncio.wait_for(loop.run_in_executor(self.pool, self._ping),
                                                       self.PING_TIMEOUT + 0.05)
            except asyncio.TimeoutError:
                self.redis_up = False
        else:  # previous ping still hung (Redis paused)
            self.redis_up = False
        if not self.redis_up:
            self.breaker.trip()
        elif was_up is False and self.on_redis_back is not None:
            self.on_redis_back()
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
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> dict:
        mode = "celery" if self.redis_up and not self.breaker.is_open else "fallback"
        ok = self.redis_up and self.workers > 0 and mode == "celery"
        return {"status": "ok" if ok else "degraded", "redis": "up" if self.redis_up else "down",
                "workers": self.workers, "mode": mode}
