"""Ways to run the proxy: :func:`serve` for the process entry point, :class:`ToxiproxyServer` in a thread.

The thread runner owns a private event loop, so tests and the local backend can embed a proxy without
sharing (or needing) an asyncio loop of their own; ``stop()`` closes every listener and connection before
the thread exits, so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.proxy.api import ApiServer
from chaos.proxy.server import ProxyCollection


async def serve(
    host: str,
    port: int,
    stop: asyncio.Event,
    config: str | Path | None = None,
    on_ready: Callable[[ApiServer], None] | None = None,
) -> None:
    """Run the API (and the proxies it creates) until ``stop`` is set, then close everything."""
    api = ApiServer(ProxyCollection())
    try:
        if config is not None:
            proxies, error = await api.collection.populate(json.loads(Path(config).read_text()))
            if error is not None:
                raise RuntimeError(f"populating from {config}: {error.message}")
        await api.start(host, port)
        if on_ready is not None:
            on_ready(api)
        await stop.wait()
    finally:
        await api.close()


class ToxiproxyServer:
    """A proxy server on a background thread: ``start()`` returns once it listens; ``.api_url`` to drive it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: str | Path | None = None) -> None:
        self.host = host
        self.port = port
        self.config = config
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.api: ApiServer | None = None

    @property
    def api_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ToxiproxyServer:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("proxy server did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"proxy server failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        def ready(api: ApiServer) -> None:
            self.api = api
            self.port = api.port
            self._ready.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self.host, self.port, self._stop, self.config, ready)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to start()
            self._error = exc
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout)
        self._thread = None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server loop (for white-box access from tests); returns its result."""
        assert self._loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def __enter__(self) -> ToxiproxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
