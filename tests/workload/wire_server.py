"""The two halves of a minimal HTTP/1.1 server the workload tests play the target with (real sockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The next request's head (its body, if any, read and dropped); IncompleteReadError at EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                   if h.lower().startswith(b"content-length:")), 0)
    if length:
        await reader.readexactly(length)
    return head


async def answer_json(writer: asyncio.StreamWriter, data: Any) -> None:
    """A 200 with ``data`` as JSON, the connection kept alive."""
    body = json.dumps(data).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
