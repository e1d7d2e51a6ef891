"""The workload's HTTP client: one kept-alive connection per process slot, each request timed on the wire.

A burst of 100 submits is measured here, so what the client costs per request is added to every latency it
reports: its event loop reads a response only once it has sent the requests ahead of it. httpx cost about 0.5 ms
of CPU per request; against the same endpoint, a burst of 100 measured 158 ms through it (median of 8), 96 ms
through aiohttp (C-accelerated parser) and 93 ms through a raw socket client. So the workload speaks aiohttp.

A request's latency is the target's answer time on the wire: from opening the connection (or sending the
request on a kept-alive one) to the response head. Taken from the invocation instead, it counted the client's
own queueing: 100 submits at once through one pooled client spent up to 2-3 s inside it, which reached the same
bare endpoint in under 100 ms on the wire. So each slot has a client of its own, of one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx

# A kept-alive connection is dropped by this client after KEEPALIVE_EXPIRY_S idle, before the server drops it:
# uvicorn closes one after 5 s idle, gunicorn after 2 s. A request sent as the server closes gets "Server
# disconnected": the drain after a quiet 5 s lost the final read of a task that had finished (the gate said
# UNKNOWN for a healthy app).
KEEPALIVE_EXPIRY_S = 1.0

# What a request may raise: the request failed, or it is unknown whether it reached the target.
HTTP_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)

# What a reused connection the server closed under the request raises before any answer (RFC 9110 9.2.2: a
# client may retry an idempotent request then, as browsers and urllib3 do).
STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def classify(exc: BaseException) -> str:
    """``fail`` when the request certainly never reached the server, ``info`` when it may have (either client)."""
    never_sent = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, httpx.ConnectError,
                  httpx.ConnectTimeout)
    return "fail" if isinstance(exc, never_sent) else "info"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client of the run (building one loads the CA bundle: tens of ms)."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class Answer:
    """A response, read whole, with the time the target took to answer it on the wire (None if unknown)."""

    status_code: int
    text: str
    latency: float | None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; {} for anything else."""
        try:
            data = json.loads(self.text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def _mark(name: str) -> Any:
    async def on(_session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: Any) -> None:
        marks = ctx.trace_request_ctx
        if isinstance(marks, dict):
            marks.setdefault(name, time.monotonic())
    return on


def _trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_mark("connect"))
    trace.on_request_headers_sent.append(_mark("sent"))  # the answer is marked where the response head returns
    return trace


class WireClient:
    """``slots`` clients of one connection each; ``request(slot, ...)`` goes out on ``slot % slots``."""

    def __init__(self, slots: int, timeout: float) -> None:
        self.slots = max(1, slots)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: list[aiohttp.ClientSession] = []

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[WireClient]:
        tls, trace = _tls_context(), _trace()
        self._sessions = [aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=KEEPALIVE_EXPIRY_S, ssl=tls),
            trace_configs=[trace], timeout=self.timeout) for _ in range(self.slots)]
        try:
            yield self
        finally:
            sessions, self._sessions = self._sessions, []
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
            await asyncio.sleep(0)  # the transports finish closing on this loop (aiohttp's graceful shutdown)

    async def request(self, slot: int, method: str, url: str, *, json_body: Any = None,
                      headers: dict[str, str] | None = None) -> Answer:
        """The whole answer; a read on a kept-alive connection the server had just closed is sent once more on a
        new one, anything else (a submit, a fresh connection) raises."""
        session = self._sessions[slot % len(self._sessions)]
        marks: dict[str, float] = {}
        try:
            return await self._send(session, method, url, json_body, headers, marks)
        except STALE_CONNECTION:
            if method != "GET" or "connect" in marks:
                raise  # a fresh connection that fails is the target's answer; a submit may have landed
            return await self._send(session, method, url, json_body, headers, {})

    @staticmethod
    async def _send(session: aiohttp.ClientSession, method: str, url: str, json_body: Any,
                    headers: dict[str, str] | None, marks: dict[str, float]) -> Answer:
        async with session.request(method, url, json=json_body, headers=headers, trace_request_ctx=marks) as r:
            answered = time.monotonic()
            text = await r.text(errors="replace")
        began = marks.get("connect", marks.get("sent"))
        return Answer(r.status, text, None if began is None else max(0.0, answered - began))
