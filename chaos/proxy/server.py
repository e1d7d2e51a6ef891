"""The proxying itself: listeners, connections, and one link per direction running the toxic chain.

Everything here runs on one asyncio loop (the API handlers too), so no locking is needed. Each accepted
client gets a :class:`Connection` to the upstream with two :class:`Link` s (``upstream`` = client->server,
``downstream`` = server->client). A link is two tasks: a reader that moves chunks from the source socket
into a small bounded queue (so a slow or held link pushes back on the sender through TCP, never buffering
without limit), and a pump that feeds each chunk through the link's current toxics and writes the result. A link
without toxics, with nothing queued, skips both: the bytes are written on from the protocol callback (the fast
path a link spends most of its life on; ``PassThroughReader``).
Toxics are attached to live links when added, so they affect existing connections at their next bytes.
An error on either socket ends both; an upstream RST is passed on to the client as an RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import struct
from typing import Any

from chaos.proxy.toxics import (
    STREAMS,
    Chunk,
    CloseConnection,
    Toxic,
    ToxicError,
    ToxicState,
    parse_toxicity,
    toxic_from_json,
)

log = logging.getLogger(__name__)

VERSION = "2.12.0-chaos"
READ_SIZE = 32 * 1024
QUEUE_CHUNKS = 8
CONNECT_TIMEOUT = 5.0
CLOSE_GRACE = 2.0


class ApiError(Exception):
    """An error with the HTTP status Toxiproxy would answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def split_hostport(value: str) -> tuple[str, int]:
    """Parse ``host:port`` / ``[v6]:port`` / ``:port`` (empty host means 127.0.0.1: loopback by default)."""
    if not isinstance(value, str) or ":" not in value:
        raise ApiError(f"invalid address {value!r}: expected host:port", 400)
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        raise ApiError(f"invalid port in address {value!r}", 400) from None
    if not 0 <= port <= 65535:
        raise ApiError(f"invalid port in address {value!r}", 400)
    return host, port


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PassThroughReader(asyncio.StreamReader):
    """A StreamReader that hands incoming bytes straight to ``bypass`` while nothing is buffered and ``bypass``
    takes them (a link without toxics writes them on from the protocol callback: no task wakes per chunk); the
    rest is buffered and read as usual, in order. ``buffered`` counts through ``read`` only, the one read method
    a :class:`Link` uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffered = 0  # bytes fed to the buffer and not read yet (counted from the first byte)
        self.bypass: Any = None  # (bytes) -> bool: True when it wrote them on

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # bytes, as asyncio feeds it
        if self.buffered == 0 and self.bypass is not None and self.bypass(data):
            return
        self.buffered += len(data)
        super().feed_data(data)

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.buffered -= len(data)
        return data


def _streams(loop: asyncio.AbstractEventLoop, callback: Any) -> asyncio.StreamReaderProtocol:
    return asyncio.StreamReaderProtocol(PassThroughReader(loop=loop), callback, loop=loop)


async def listen_on(callback: Any, address: str, passthrough: bool = False) -> asyncio.base_events.Server:
    """Listen on ONE address (like Go's net.Listen): ``localhost:0`` must not get two sockets, two ports.
    ``passthrough``: connections read through a :class:`PassThroughReader`."""
    host, port = split_hostport(address)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as Go does for "localhost"
    bind_host = str(infos[0][4][0])
    if not passthrough:
        return await asyncio.start_server(callback, bind_host, port, reuse_address=True)
    return await loop.create_server(lambda: _streams(loop, callback), bind_host, port, reuse_address=True)


async def connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection``, reading through a :class:`PassThroughReader`."""
    loop = asyncio.get_running_loop()
    reader = PassThroughReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _rng_from_env() -> random.Random:
    seed = os.environ.get("CHAOS_PROXY_SEED")
    return random.Random(seed) if seed not in (None, "") else random.Random()


class Link:
    """One direction of a connection: source socket -> toxic chain -> destination socket."""

    def __init__(
        self,
        conn: Connection,
        stream: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.reader = reader
        self.writer = writer
        self.states: dict[str, ToxicState] = {}  # insertion order = chain order
        self.queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)
        self.busy = False  # the pump is feeding a chunk through the toxics
        self.done = False

    # -- toxics ---------------------------------------------------------------------------------------------

    def attach(self, toxic: Toxic) -> None:
        """Start applying ``toxic`` here if this connection draws it (probability = toxicity)."""
        self.detach(toxic.name)
        rng = self.conn.proxy.rng
        if toxic.toxicity < 1.0 and rng.random() >= toxic.toxicity:
            return
        state = ToxicState(toxic, asyncio.get_running_loop(), rng, self.conn.close)
        self.states[toxic.name] = state
        toxic.attach(state)

    def detach(self, name: str) -> None:
        state = self.states.pop(name, None)
        if state is not None:
            state.detach()

    def detach_all(self) -> None:
        for name in list(self.states):
            self.detach(name)

    def _clear(self) -> bool:
        """Nothing can come between new bytes and the socket: no toxic, nothing queued, nothing in the pump."""
        return not self.states and not self.busy and self.queue.empty()

    def bypass(self, data: bytes) -> bool:
        """Write ``data`` on at once, from the protocol callback, when the link is clear and the receiver keeps up
        (less than one read waiting in its send buffer)."""
        transport = self.writer.transport
        if not self._clear() or transport.is_closing() or transport.get_write_buffer_size() > READ_SIZE:
            return False
        transport.write(data)
        return True

    def _next_state(self, applied: frozenset[ToxicState]) -> ToxicState | None:
        # Re-read the live chain at every step: toxics added or removed meanwhile count from the next step.
        for state in self.states.values():
            if state not in applied:
                return state
        return None

    # -- tasks ----------------------------------------------------------------------------------------------

    async def read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if data and self._clear():
                    # bytes the bypass left to the buffer (a slow receiver): written here, no pump hop needed
                    self.writer.write(data)
                    await self.writer.drain()  # a slow receiver pushes back on the sender, as on the queue
                    continue
                await self.queue.put(Chunk(data, asyncio.get_running_loop().time()) if data else None)
                if not data:
                    return
        except ConnectionResetError:
            self.conn.close(reset=True)
        except OSError:
            self.conn.close(abort=True)
        except Exception:  # a bug must cost one connection, not leak it
            log.exception("proxy %s: %s reader failed", self.conn.proxy.name, self.stream)
            self.conn.close(abort=True)

    async def pump(self) -> None:
        try:
            while True:
                chunk = await self.queue.get()
                if chunk is None:
                    await self._eof()
                    return
                self.busy = True  # a chunk in the toxic chain: later bytes queue behind it
                try:
                    await self._process(chunk, frozenset())
                finally:
                    self.busy = False
        except CloseConnection as exc:
            self.conn.close(reset=exc.reset)
        except ConnectionResetError:
            self.conn.close(reset=True)
        except OSError:
            self.conn.close(abort=True)
        except Exception:
            log.exception("proxy %s: %s pump failed", self.conn.proxy.name, self.stream)
            self.conn.close(abort=True)

    async def _process(self, chunk: Chunk, applied: frozenset[ToxicState]) -> None:
        state = self._next_state(applied)
        if state is None:
            if chunk.data:
                self.writer.write(chunk.data)
                await self.writer.drain()
            return
        applied = applied | {state}
        async with contextlib.aclosing(state.toxic.pipe(chunk, state)) as outputs:
            async for out in outputs:
                await self._process(out, applied)

    async def _eof(self) -> None:
        applied: frozenset[ToxicState] = frozenset()
        while (state := self._next_state(applied)) is not None:
            applied = applied | {state}
            await state.toxic.on_eof(state)
        self.done = True
        if self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()
        self.conn.link_done()


class Connection:
    """A client connection and its upstream connection, with a link per direction."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_writer = client[1]
        self.server_writer = server[1]
        self.links = {
            "upstream": Link(self, "upstream", client[0], server[1]),
            "downstream": Link(self, "downstream", server[0], client[1]),
        }
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def start(self) -> None:
        for toxic in self.proxy.toxics.values():
            self.links[toxic.stream].attach(toxic)
        for link in self.links.values():
            if isinstance(link.reader, PassThroughReader):
                link.reader.bypass = link.bypass
            for coro in (link.read_loop(), link.pump()):
                task = asyncio.get_running_loop().create_task(coro)
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    def link_done(self) -> None:
        """A direction finished cleanly (EOF passed on); when both have, the connection is over."""
        if all(link.done for link in self.links.values()):
            self.close()

    def close(self, reset: bool = False, abort: bool = False) -> None:
        """End both sides: FIN after flushing (default), FIN without flushing (abort), or RST (reset)."""
        if self.closed:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        for link in self.links.values():
            link.detach_all()
        for writer in (self.client_writer, self.server_writer):
            _close_writer(writer, reset=reset, abort=abort)


def _close_writer(writer: asyncio.StreamWriter, reset: bool, abort: bool) -> None:
    transport = writer.transport
    if transport.is_closing() and not reset:
        return
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    elif abort:
        transport.abort()
    else:
        transport.close()  # flushes what is buffered; abort if the peer never reads it
        asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


class Proxy:
    """A named listener forwarding to an upstream, with its toxics and live connections."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics.values()],
        }

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.enabled:
            return
        try:
            self._server = await listen_on(self._accept, self.listen, passthrough=True)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from None
        # Port 0 -> the real address and port, kept for re-enabling (as Toxiproxy does).
        self.listen = join_hostport(*self._server.sockets[0].getsockname()[:2])
        self.enabled = True

    async def stop(self) -> None:
        """Take the proxy down: stop listening and drop every connection (the "down" state)."""
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._pending):
            task.cancel()
        for conn in list(self.connections):
            conn.close(abort=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        try:
            host, port = split_hostport(self.upstream)
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    connect(host, port), CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError) as exc:
                log.info("proxy %s: upstream %s unreachable: %s", self.name, self.upstream, exc)
                writer.transport.abort()
                return
            if not self.enabled:
                up_writer.transport.abort()
                writer.transport.abort()
                return
            for w in (writer, up_writer):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, (reader, writer), (up_reader, up_writer))
            self.connections.add(conn)
            conn.start()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except ApiError:
            writer.transport.abort()
        finally:
            if task is not None:
                self._pending.discard(task)

    # -- toxics ---------------------------------------------------------------------------------------------

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise ApiError("toxic already exists", 409)
        self.toxics[toxic.name] = toxic
        for conn in list(self.connections):
            conn.links[toxic.stream].attach(toxic)

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.get_toxic(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: expected a JSON object", 400)
        try:
            attributes = body.get("attributes")
            if attributes is not None:
                toxic.update_attributes(attributes)
            if "toxicity" in body:
                toxic.toxicity = parse_toxicity(body["toxicity"])
        except ToxicError as exc:
            raise ApiError(str(exc), 400) from None
        # Re-attach so the new values (and a new toxicity draw) apply to live links at once, like Toxiproxy.
        for conn in list(self.connections):
            conn.links[toxic.stream].attach(toxic)
        return toxic

    def get_toxic(self, name: str) -> Toxic:
        try:
            return self.toxics[name]
        except KeyError:
            raise ApiError("toxic not found", 404) from None

    def remove_toxic(self, name: str) -> None:
        toxic = self.get_toxic(name)
        del self.toxics[name]
        for conn in list(self.connections):
            conn.links[toxic.stream].detach(name)

    def remove_all_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)


class ProxyCollection:
    """All proxies, with the Toxiproxy API's operations and errors."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or _rng_from_env()
        self.proxies: dict[str, Proxy] = {}

    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError("proxy not found", 404) from None

    @staticmethod
    def _validate(body: Any) -> tuple[str, str, str, bool]:
        if not isinstance(body, dict):
            raise ApiError("bad request body: expected a JSON object", 400)
        name, listen, upstream = body.get("name"), body.get("listen") or "127.0.0.1:0", body.get("upstream")
        enabled = body.get("enabled", True)
        if not name or not isinstance(name, str):
            raise ApiError("missing required field: name", 400)
        if not upstream or not isinstance(upstream, str):
            raise ApiError("missing required field: upstream", 400)
        if not isinstance(enabled, bool):
            raise ApiError("bad request body: enabled must be a boolean", 400)
        split_hostport(listen)
        split_hostport(upstream)
        return name, listen, upstream, enabled

    async def create(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = self._validate(body)
        if name in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = Proxy(name, listen, upstream, self.rng)
        if enabled:  # a disabled proxy binds nothing until enabled
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def update(self, name: str, body: Any) -> Proxy:
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: expected a JSON object", 400)
        listen = body.get("listen") or proxy.listen
        upstream = body.get("upstream") or proxy.upstream
        enabled = body.get("enabled", proxy.enabled)
        if not isinstance(enabled, bool):
            raise ApiError("bad request body: enabled must be a boolean", 400)
        split_hostport(listen)
        split_hostport(upstream)
        if listen != proxy.listen or upstream != proxy.upstream:
            # Toxiproxy restarts the proxy, dropping active connections.
            await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            await proxy.start()
        elif not enabled and proxy.enabled:
            await proxy.stop()
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        del self.proxies[name]
        await proxy.stop()

    async def populate(self, body: Any) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace proxies; ones whose listen/upstream already match are left untouched."""
        if not isinstance(body, list):
            raise ApiError("bad request body: expected a JSON array of proxies", 400)
        entries = [self._validate(item) for item in body]
        result: list[Proxy] = []
        for name, listen, upstream, enabled in entries:
            existing = self.proxies.get(name)
            if existing is not None:
                if _same_listen(existing.listen, listen) and existing.upstream == upstream:
                    result.append(existing)
                    continue
                await self.delete(name)
            try:
                result.append(
                    await self.create(
                        {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
                    )
                )
            except ApiError as exc:
                return result, exc
        return result, None

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            proxy.remove_all_toxics()
            if not proxy.enabled:
                await proxy.start()

    async def add_toxic(self, name: str, body: Any) -> Toxic:
        proxy = self.get(name)
        try:
            toxic = toxic_from_json(body)
        except ToxicError as exc:
            raise ApiError(str(exc), 400) from None
        proxy.add_toxic(toxic)
        return toxic

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()


def _same_listen(current: str, wanted: str) -> bool:
    """Port 0 asks for "any port", so it matches the port the proxy actually got (keeps /populate idempotent)."""
    if current == wanted:
        return True
    try:
        (h1, p1), (h2, p2) = split_hostport(current), split_hostport(wanted)
    except ApiError:
        return False
    return h1 == h2 and (p1 == p2 or p2 == 0)


__all__ = ["ApiError", "Connection", "Link", "Proxy", "ProxyCollection", "STREAMS", "VERSION"]
