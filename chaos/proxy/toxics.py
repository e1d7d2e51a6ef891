"""Toxics: small transforms applied to the chunks flowing through one direction of a proxied connection.

Each toxic type is one class with one concept, named and parameterised exactly like Toxiproxy's so a real
Toxiproxy can stand in for this proxy. A toxic is shared by all connections of a proxy; what is private to one
connection direction (the "link") lives in a :class:`ToxicState`, created when the toxic is attached to that
link (at connection time, or later when the toxic is added at runtime) and detached when it is removed.

The link feeds each chunk through :meth:`Toxic.pipe`, an async generator yielding zero or more chunks for the
next toxic, and calls :meth:`Toxic.on_eof` when the source half-closes. Every wait a toxic does goes through
the state (:meth:`ToxicState.sleep`, :meth:`ToxicState.wait_removed`), so removing a toxic interrupts it at
once: held data flows again, a pending delay is cut short. A toxic that must end the connection raises
:class:`CloseConnection`; it never owns a task or a socket, so it cannot leak one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

STREAMS = ("upstream", "downstream")


class ToxicError(ValueError):
    """A toxic description that cannot be applied (bad type, stream or attribute); the API answers 400."""


class CloseConnection(Exception):
    """Raised by a toxic to end the whole connection (both sides); ``reset`` closes with an RST."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass
class Chunk:
    """Bytes read from one side, with the loop time they were read at (latency is measured from there)."""

    data: bytes
    ts: float


class ToxicState:
    """What one toxic keeps for one link: its timers, counters and the "removed" signal that ends its waits."""

    def __init__(
        self,
        toxic: Toxic,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        close: Callable[[bool], None],
    ) -> None:
        self.toxic = toxic
        self.loop = loop
        self.rng = rng
        self.removed = False
        self.data: dict[str, Any] = {}
        self._close = close
        self._waiters: set[asyncio.Future[bool]] = set()
        self._timers: list[asyncio.TimerHandle] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """A timer that dies with the state, so a removed toxic never fires later."""
        self._timers.append(self.loop.call_later(delay, fn))

    def close_connection(self, reset: bool = False) -> None:
        """End the connection from a timer (outside the link's task)."""
        if not self.removed:
            self._close(reset)

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the toxic is removed first. True if the full time elapsed, False if interrupted."""
        if self.removed:
            return False
        if seconds <= 0:
            return True
        return await self._wait(seconds)

    async def wait_removed(self) -> None:
        """Block until the toxic is removed from this link (used to hold data)."""
        if not self.removed:
            await self._wait(None)

    async def _wait(self, seconds: float | None) -> bool:
        fut: asyncio.Future[bool] = self.loop.create_future()
        self._waiters.add(fut)
        handle = None
        if seconds is not None:
            handle = self.loop.call_later(seconds, _resolve, fut, True)
        try:
            return await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._waiters.discard(fut)

    def detach(self) -> None:
        """The toxic left this link: wake every wait (as interrupted) and cancel timers."""
        self.removed = True
        for fut in list(self._waiters):
            _resolve(fut, False)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class Toxic:
    """Base class: identity (name, stream, toxicity), validated attributes, and a pass-through pipe."""

    type: ClassVar[str] = ""
    #: attribute name -> default; every attribute is a non-negative integer, as in Toxiproxy.
    ATTRIBUTES: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        name: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.toxicity = toxicity
        self.attributes: dict[str, int] = dict(self.ATTRIBUTES)
        self.update_attributes(attributes or {})

    def update_attributes(self, attributes: dict[str, Any]) -> None:
        if not isinstance(attributes, dict):
            raise ToxicError("attributes must be an object")
        new = dict(self.attributes)
        for key, value in attributes.items():
            if key not in self.ATTRIBUTES:
                raise ToxicError(f"unknown attribute {key!r} for toxic type {self.type}")
            new[key] = _non_negative_int(key, value)
        self.attributes = new

    def __getattr__(self, item: str) -> int:
        # Attribute access sugar (toxic.latency); only reached when normal lookup fails.
        attributes = self.__dict__.get("attributes", {})
        if item in attributes:
            return attributes[item]
        raise AttributeError(item)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    def attach(self, state: ToxicState) -> None:
        """Called when the toxic starts applying to a link (e.g. to arm a timer)."""

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        yield chunk

    async def on_eof(self, state: ToxicState) -> None:
        """The source half-closed; runs before the EOF is passed on."""


def _non_negative_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToxicError(f"attribute {key!r} must be a number, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ToxicError(f"attribute {key!r} must be an integer, got {value!r}")
        value = int(value)
    if value < 0:
        raise ToxicError(f"attribute {key!r} must be >= 0, got {value!r}")
    return value


class Latency(Toxic):
    """Delay every chunk by ``latency`` ms +/- ``jitter`` ms, counted from when it was read (pipelined)."""

    type = "latency"
    ATTRIBUTES = {"latency": 0, "jitter": 0}

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        delay = self.latency
        if self.jitter > 0:
            delay += state.rng.randint(-self.jitter, self.jitter)
        target = chunk.ts + max(delay, 0) / 1000.0
        if await state.sleep(target - state.loop.time()):
            # Later latency toxics add up, as in Toxiproxy.
            yield Chunk(chunk.data, max(target, chunk.ts))
        else:
            yield chunk


class Bandwidth(Toxic):
    """Cap throughput at ``rate`` KB/s (1 KB = 1000 bytes), sending at most 100 ms worth at a time."""

    type = "bandwidth"
    ATTRIBUTES = {"rate": 0}

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        rate = self.rate
        if rate <= 0:
            yield chunk
            return
        data = chunk.data
        step = max(1, rate * 100)  # bytes per 100 ms
        deadline = state.data.get("deadline", 0.0)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            # Keep a running schedule so rounding never lets the rate drift upwards.
            now = state.loop.time()
            deadline = max(deadline, now) + len(piece) / (rate * 1000.0)
            state.data["deadline"] = deadline
            if not await state.sleep(deadline - now):
                yield Chunk(data[start:], chunk.ts)
                return
            yield Chunk(piece, chunk.ts)


class SlowClose(Toxic):
    """Delay passing on the close (EOF) by ``delay`` ms."""

    type = "slow_close"
    ATTRIBUTES = {"delay": 0}

    async def on_eof(self, state: ToxicState) -> None:
        await state.sleep(self.delay / 1000.0)


class Timeout(Toxic):
    """Let no data through; close the connection after ``timeout`` ms (0: never close).

    Data is held, not dropped: when the toxic is removed it flows again on the same connection, so a
    "cut" link heals without the client reconnecting.
    """

    type = "timeout"
    ATTRIBUTES = {"timeout": 0}

    def attach(self, state: ToxicState) -> None:
        if self.timeout > 0:
            state.call_later(self.timeout / 1000.0, state.close_connection)

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        await state.wait_removed()
        yield chunk

    async def on_eof(self, state: ToxicState) -> None:
        await state.wait_removed()


class ResetPeer(Toxic):
    """On the next data (or close), wait ``timeout`` ms then reset the connection (RST, SO_LINGER 0)."""

    type = "reset_peer"
    ATTRIBUTES = {"timeout": 0}

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        if await state.sleep(self.timeout / 1000.0):
            raise CloseConnection(reset=True)
        yield chunk

    async def on_eof(self, state: ToxicState) -> None:
        if await state.sleep(self.timeout / 1000.0):
            raise CloseConnection(reset=True)


class Slicer(Toxic):
    """Split data into pieces of ``average_size`` +/- ``size_variation`` bytes, ``delay`` µs apart."""

    type = "slicer"
    ATTRIBUTES = {"average_size": 0, "size_variation": 0, "delay": 0}

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        average = self.average_size
        if average <= 0:
            yield chunk
            return
        variation = min(self.size_variation, average - 1)
        data = chunk.data
        pos = 0
        while pos < len(data):
            size = average + (state.rng.randint(-variation, variation) if variation else 0)
            piece = data[pos : pos + max(1, size)]
            pos += len(piece)
            yield Chunk(piece, chunk.ts)
            if pos < len(data) and self.delay > 0:
                if not await state.sleep(self.delay / 1_000_000.0):
                    yield Chunk(data[pos:], chunk.ts)
                    return


class LimitData(Toxic):
    """Close the connection once ``bytes`` bytes have passed in this direction."""

    type = "limit_data"
    ATTRIBUTES = {"bytes": 0}

    async def pipe(self, chunk: Chunk, state: ToxicState) -> AsyncGenerator[Chunk, None]:
        sent = state.data.get("sent", 0)
        remaining = self.bytes - sent
        if remaining > 0:
            piece = chunk.data[:remaining]
            state.data["sent"] = sent + len(piece)
            yield Chunk(piece, chunk.ts)
        if self.bytes - state.data.get("sent", 0) <= 0:
            raise CloseConnection()


TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type: cls for cls in (Latency, Bandwidth, SlowClose, Timeout, ResetPeer, Slicer, LimitData)
}


def toxic_from_json(body: Any) -> Toxic:
    """Build a toxic from its Toxiproxy JSON form, applying Toxiproxy's defaults; raises ToxicError."""
    if not isinstance(body, dict):
        raise ToxicError("bad request body: expected a JSON object")
    type_ = body.get("type")
    if type_ not in TOXIC_TYPES:
        raise ToxicError(f"invalid toxic type: {type_!r}")
    stream = body.get("stream") or "downstream"
    if stream not in STREAMS:
        raise ToxicError("stream was invalid, can be either upstream or downstream")
    toxicity = parse_toxicity(body.get("toxicity", 1.0))
    name = body.get("name") or f"{type_}_{stream}"
    if not isinstance(name, str):
        raise ToxicError("toxic name must be a string")
    attributes = body.get("attributes") or {}
    return TOXIC_TYPES[type_](name, stream, toxicity, attributes)


def parse_toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ToxicError(f"toxicity must be a number between 0 and 1, got {value!r}")
    return float(value)
