"""The session's client loop: the workload's async client held open in a thread, callable from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from chaos.errors import ChaosError
from chaos.workload import BaseWorkload

T = TypeVar("T")


class ClientLoop:
    """One event loop in a thread of its own, holding the workload's client session (the HTTP client or the
    Celery app) open for the whole test, as the runner holds it for a whole scenario. Any thread may call."""

    def __init__(self, workload: BaseWorkload) -> None:
        self._workload = workload
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="chaos-session-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._hold())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of __init__
            self._error = exc
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _hold(self) -> None:
        async with self._workload._session():
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._stop is not None

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self.alive:
            coro.close()
            raise ChaosError("the chaos session is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
