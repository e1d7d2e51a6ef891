"""No leaks: connections and their tasks go away when clients leave, proxies go down, or toxics end them."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from chaos.proxy import ToxiproxyServer
from chaos.proxy.client import Proxy, ToxiproxyClient
from chaos.waiting import wait_until

pytestmark = pytest.mark.timeout(30)


def live(server: ToxiproxyServer, name: str) -> tuple[int, int]:
    """(open connections of the proxy, tasks on the server loop)."""
    assert server.api is not None
    proxies = server.api.collection.proxies
    return server.call(
        lambda: (len(proxies[name].connections) if name in proxies else 0, len(asyncio.all_tasks()))
    )


def wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, timeout, 0.02, what="the condition", error=AssertionError)


def ping(sock: socket.socket) -> None:
    sock.sendall(b"PING\r\n")
    assert sock.recv(7) == b"+PONG\r\n"


def test_closed_clients_leave_no_connection_or_task(
    proxy_server: ToxiproxyServer, client: ToxiproxyClient, redis_proxy: Proxy
) -> None:
    baseline_tasks = live(proxy_server, redis_proxy.name)[1]
    client.latency(redis_proxy, 5)
    client.slicer(redis_proxy, 2, 1, 10, stream="upstream")
    socks = [socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=2) for _ in range(5)]
    for s in socks:
        ping(s)
    conns, tasks = live(proxy_server, redis_proxy.name)
    assert conns == 5 and tasks >= baseline_tasks + 20  # 4 tasks per connection
    for s in socks:
        s.close()
    wait_for(lambda: live(proxy_server, redis_proxy.name) == (0, baseline_tasks))


def test_held_connections_are_dropped_by_disable_and_delete(
    proxy_server: ToxiproxyServer, client: ToxiproxyClient, redis_proxy: Proxy
) -> None:
    baseline_tasks = live(proxy_server, redis_proxy.name)[1]
    socks = [socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=2) for _ in range(3)]
    client.cut(redis_proxy)
    for s in socks:
        s.sendall(b"PING\r\n")
    wait_for(lambda: live(proxy_server, redis_proxy.name)[0] == 3)
    client.disable(redis_proxy)
    for s in socks:
        assert s.recv(7) == b""
        s.close()
    assert live(proxy_server, redis_proxy.name) == (0, baseline_tasks)
    client.enable(redis_proxy)
    s = socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=2)
    s.sendall(b"PING\r\n")
    wait_for(lambda: live(proxy_server, redis_proxy.name)[0] == 1)
    client.delete(redis_proxy)
    assert s.recv(7) == b""
    s.close()
    wait_for(lambda: live(proxy_server, redis_proxy.name)[1] == baseline_tasks)


def test_server_close_of_upstream_reaches_client(
    client: ToxiproxyClient, redis_proxy: Proxy, proxy_server: ToxiproxyServer
) -> None:
    s = socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=2)
    s.sendall(b"QUIT\r\n")
    assert s.recv(5) == b"+OK\r\n"
    assert s.recv(5) == b""
    s.close()
    wait_for(lambda: live(proxy_server, redis_proxy.name)[0] == 0)


def test_embedded_server_stop_closes_everything(redis_port: int) -> None:
    server = ToxiproxyServer().start()
    with ToxiproxyClient(server.api_url) as c:
        proxy = c.create("r", "127.0.0.1:0", f"127.0.0.1:{redis_port}")
        s = socket.create_connection((proxy.host, proxy.port), timeout=2)
        ping(s)
        c.timeout(proxy, 0)
        s.sendall(b"PING\r\n")
    server.stop()
    assert s.recv(7) == b""
    s.close()
    for port in (server.port, proxy.port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)


def test_held_link_pushes_back_instead_of_buffering(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    """With the reply direction held, the sender must soon block: the proxy buffers a bounded amount only."""
    client.timeout(echo_proxy, 0)  # downstream held: echoes pile up in the proxy unless it pushes back
    sock = socket.create_connection((echo_proxy.host, echo_proxy.port), timeout=2)
    sock.setblocking(False)
    block = b"z" * 65536
    sent = 0
    stalled_since = None
    while sent < 256 * 1024 * 1024:
        try:
            sent += sock.send(block)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
            time.sleep(0.01)
    sock.close()
    # Kernel socket buffers on 4 sockets account for most of this; without backpressure it would be 256 MB.
    assert sent < 64 * 1024 * 1024, sent
