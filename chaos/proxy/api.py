"""Toxiproxy's HTTP API on a tiny asyncio HTTP/1.1 server (stdlib only, so the proxy runs in a bare image).

Routes, status codes and JSON bodies follow Toxiproxy 2.x (``api.go``): 201 on proxy creation and populate,
204 on deletes and reset, ``{"error": msg, "status": code}`` on errors. Requests are handled one at a time
per connection with keep-alive; bodies are read by Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from chaos.proxy.server import VERSION, ApiError, ProxyCollection, join_hostport, listen_on

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
HEADER_TIMEOUT = 60.0
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Internal Server Error",
}

Response = tuple[int, Any]
Handler = Callable[..., Awaitable[Response]]


class ApiServer:
    """Routes HTTP requests to a :class:`ProxyCollection`; ``start`` binds, ``close`` unbinds and drops all."""

    def __init__(self, collection: ProxyCollection | None = None) -> None:
        self.collection = collection or ProxyCollection()
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.host = ""
        self.port = 0
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/version", self.version),
            ("POST", "/reset", self.reset),
            ("GET", "/proxies", self.proxy_index),
            ("POST", "/proxies", self.proxy_create),
            ("POST", "/populate", self.populate),
            ("GET", "/proxies/([^/]+)", self.proxy_show),
            ("POST", "/proxies/([^/]+)", self.proxy_update),
            ("PATCH", "/proxies/([^/]+)", self.proxy_update),
            ("DELETE", "/proxies/([^/]+)", self.proxy_delete),
            ("GET", "/proxies/([^/]+)/toxics", self.toxic_index),
            ("POST", "/proxies/([^/]+)/toxics", self.toxic_create),
            ("GET", "/proxies/([^/]+)/toxics/([^/]+)", self.toxic_show),
            ("POST", "/proxies/([^/]+)/toxics/([^/]+)", self.toxic_update),
            ("PATCH", "/proxies/([^/]+)/toxics/([^/]+)", self.toxic_update),
            ("DELETE", "/proxies/([^/]+)/toxics/([^/]+)", self.toxic_delete),
        ]
        self.routes = [(m, re.compile(f"^{p}$"), h) for m, p, h in table]

    # -- server ---------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 8474) -> None:
        self._server = await listen_on(self._client, join_hostport(host, port))
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        await self.collection.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader, writer), HEADER_TIMEOUT)
                except _BadRequest as exc:
                    await _write_response(writer, 400, {"error": str(exc), "status": 400}, False)
                    return
                if request is None:
                    return
                method, path, headers, body = request
                status, payload = await self.dispatch(method, path, headers, body)
                keep_alive = headers.get("connection", "").lower() != "close"
                await _write_response(writer, status, payload, keep_alive)
                if not keep_alive:
                    return
        except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.transport.close()

    async def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if headers.get("user-agent", "").startswith("Mozilla/"):
            # Like Toxiproxy: a browser page must not be able to drive the API (CSRF).
            return 403, {"error": "User agent not allowed", "status": 403}
        path = urlsplit(path).path.rstrip("/") or "/"
        allowed = False
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if not match:
                continue
            allowed = True
            if route_method != method:
                continue
            try:
                data = json.loads(body) if body.strip() else None
            except ValueError as exc:
                return _error(ApiError(f"bad request body: {exc}", 400))
            try:
                return await handler(*(unquote(g) for g in match.groups()), data=data)
            except ApiError as exc:
                return _error(exc)
            except Exception as exc:  # a bug must not kill the API loop
                log.exception("API handler failed")
                return _error(ApiError(f"internal error: {exc}", 500))
        if allowed:
            return 405, {"error": "method not allowed", "status": 405}
        return 404, {"error": "not found", "status": 404}

    # -- handlers -------------------------------------------------------------------------------------------

    async def version(self, data: Any) -> Response:
        return 200, {"version": VERSION}

    async def reset(self, data: Any) -> Response:
        await self.collection.reset()
        return 204, None

    async def proxy_index(self, data: Any) -> Response:
        return 200, {name: p.to_json() for name, p in self.collection.proxies.items()}

    async def proxy_create(self, data: Any) -> Response:
        return 201, (await self.collection.create(data)).to_json()

    async def populate(self, data: Any) -> Response:
        proxies, error = await self.collection.populate(data)
        payload: dict[str, Any] = {"proxies": [p.to_json() for p in proxies]}
        if error is not None:
            payload.update(error=error.message, status=error.status)
            return error.status, payload
        return 201, payload

    async def proxy_show(self, name: str, data: Any) -> Response:
        return 200, self.collection.get(name).to_json()

    async def proxy_update(self, name: str, data: Any) -> Response:
        return 200, (await self.collection.update(name, data)).to_json()

    async def proxy_delete(self, name: str, data: Any) -> Response:
        await self.collection.delete(name)
        return 204, None

    async def toxic_index(self, name: str, data: Any) -> Response:
        return 200, [t.to_json() for t in self.collection.get(name).toxics.values()]

    async def toxic_create(self, name: str, data: Any) -> Response:
        return 200, (await self.collection.add_toxic(name, data)).to_json()

    async def toxic_show(self, name: str, toxic: str, data: Any) -> Response:
        return 200, self.collection.get(name).get_toxic(toxic).to_json()

    async def toxic_update(self, name: str, toxic: str, data: Any) -> Response:
        return 200, self.collection.get(name).update_toxic(toxic, data).to_json()

    async def toxic_delete(self, name: str, toxic: str, data: Any) -> Response:
        self.collection.get(name).remove_toxic(toxic)
        return 204, None


def _error(exc: ApiError) -> Response:
    return exc.status, {"error": exc.message, "status": exc.status}


class _BadRequest(Exception):
    pass


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = await reader.readline()
    if not line:
        return None
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise _BadRequest("malformed request line") from None
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        key, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest("malformed header")
        headers[key.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunked = bytearray()
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise _BadRequest("malformed chunk size") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            if len(chunked) + size > MAX_BODY:
                raise _BadRequest("body too large")
            chunked += await reader.readexactly(size)
            await reader.readline()
        return method.upper(), target, headers, bytes(chunked)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest("bad content-length") from None
    if length < 0 or length > MAX_BODY:
        raise _BadRequest("bad content-length")
    body = await reader.readexactly(length) if length else b""
    return method.upper(), target, headers, body


async def _write_response(writer: asyncio.StreamWriter, status: int, payload: Any, keep_alive: bool) -> None:
    body = b"" if status == 204 or payload is None else (json.dumps(payload) + "\n").encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        "Content-Type: application/json",
        *([] if status == 204 else [f"Content-Length: {len(body)}"]),
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
