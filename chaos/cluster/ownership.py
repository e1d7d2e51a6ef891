"""Is the server we are about to talk to ours? Asked before a node counts as ready and on every new connection.

A port picked free (``free_port``) can be taken by somebody else's process before our server binds it, or while
ours is down; on a shared machine that happens. Whatever answers there must prove it is ours before we count it
as ready and before we send it anything: FLUSHALL, CLIENT KILL, CONFIG SET and DEL are faults to us and data loss
to its owner. The proofs are cheap and exact:

* Redis, local backend: ``INFO server`` reports the server's ``process_id``; it must be our redis-server's pid.
* Redis, docker backend: the container is ours (our run label) and publishes the very host port we dialled
  (Docker holds a published port for the container's whole life, so nobody else can answer on it meanwhile).
* the fault proxy (local): the socket listening on its port belongs to our process or one of its children.

Redis clients check on connect (``verified_connect``, a redis-py ``redis_connect_func``), so every command of
every caller, the nemesis's faults and the cluster's reset included, goes through the check, once per connection.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from chaos.errors import ClusterError


class ForeignEndpoint(ClusterError):
    """The server on an endpoint we picked belongs to somebody else: nothing may be sent to it."""


def redis_process_id(conn: Any) -> int | None:
    """``process_id`` from ``INFO server``, asked on a connection that has done its handshake."""
    conn.send_command("INFO", "server")
    raw = conn.read_response()
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    m = re.search(r"^process_id:(\d+)", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def verified_connect(check: Callable[[Any], None]) -> Callable[..., None]:
    """A redis-py ``redis_connect_func``: the usual handshake, then ``check(conn)``, which raises ForeignEndpoint
    for a server that is not ours; the connection is closed before the error leaves, so nothing else goes out.

    (redis-py annotates the hook as taking no argument; it is called with the connection.)
    """

    def connect(conn: Any) -> None:
        conn.on_connect()
        try:
            check(conn)
        except BaseException:
            conn.disconnect()
            raise

    return connect


def _inet_connections(proc: psutil.Process) -> list[Any]:
    get = getattr(proc, "net_connections", None) or proc.connections  # net_connections: psutil >= 6
    return list(get(kind="inet"))


def listens_on(pids: Iterable[int], port: int) -> bool:
    """Does one of ``pids`` hold a listening TCP socket on ``port``?"""
    for pid in pids:
        try:
            conns = _inet_connections(psutil.Process(pid))
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            return True
    return False


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Does anything accept a TCP connection on host:port (closed at once, nothing is sent)?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
