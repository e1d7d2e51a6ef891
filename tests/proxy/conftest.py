"""Fixtures for the fault proxy tests: a real redis-server, a TCP echo server, an embedded proxy and a client.

Everything binds 127.0.0.1 on free ports and is torn down after, so the tests can run in parallel with others.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from chaos.cluster.ports import free_port
from chaos.proxy import ToxiproxyServer
from chaos.proxy.client import Proxy, ToxiproxyClient
from chaos.waiting import wait_until


def wait_port(port: int, timeout: float = 10.0) -> None:
    def accepts() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True

    wait_until(accepts, timeout, 0.02, what=f"127.0.0.1:{port} to accept", ignore=OSError, error=TimeoutError)


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


class EchoServer:
    """A threaded TCP echo server (one thread per connection), to measure what the proxy does to bytes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    self.received.append(data)
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@pytest.fixture(scope="session")
def echo_port() -> Iterator[int]:
    server = EchoServer()
    yield server.port
    server.close()


@pytest.fixture(scope="session")
def proxy_server() -> Iterator[ToxiproxyServer]:
    with ToxiproxyServer() as server:
        yield server


@pytest.fixture
def client(proxy_server: ToxiproxyServer) -> Iterator[ToxiproxyClient]:
    with ToxiproxyClient(proxy_server.api_url, timeout=5) as c:
        yield c
        for name in c.proxies():
            c.delete(name)


_names = itertools.count()


@pytest.fixture
def redis_proxy(client: ToxiproxyClient, redis_port: int) -> Proxy:
    return client.create(f"redis_{next(_names)}", "127.0.0.1:0", f"127.0.0.1:{redis_port}")


@pytest.fixture
def echo_proxy(client: ToxiproxyClient, echo_port: int) -> Proxy:
    return client.create(f"echo_{next(_names)}", "127.0.0.1:0", f"127.0.0.1:{echo_port}")
