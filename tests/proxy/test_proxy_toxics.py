"""Each toxic, measured on real sockets through the embedded proxy (Redis or a TCP echo server behind it)."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from chaos.cluster.ports import free_port
from chaos.proxy import ToxiproxyServer
from chaos.proxy.client import Proxy, ToxiproxyClient

pytestmark = pytest.mark.timeout(30)


def connect(proxy: Proxy, timeout: float = 3.0) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def redis_conn(proxy: Proxy, socket_timeout: float = 3.0) -> redis.Connection:
    conn = redis.Connection(host=proxy.host, port=proxy.port, socket_timeout=socket_timeout)
    conn.connect()
    return conn


def timed_ping(conn: redis.Connection) -> float:
    start = time.monotonic()
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG")
    return time.monotonic() - start




def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


def recv_until_eof(sock: socket.socket) -> bytes:
    buf = bytearray()
    while data := sock.recv(65536):
        buf += data
    return bytes(buf)


# -- latency ------------------------------------------------------------------------------------------------


def test_latency_delays_round_trip_downstream(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    conn = redis_conn(redis_proxy)
    assert timed_ping(conn) < 0.09
    client.latency(redis_proxy, 100)
    # Added while the connection is open: applies to its next bytes.
    assert timed_ping(conn) >= 0.1
    client.remove_toxic(redis_proxy, "latency_downstream")
    assert timed_ping(conn) < 0.09
    conn.disconnect()


def test_latency_upstream_and_downstream_add_up(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    client.latency(redis_proxy, 60, stream="upstream")
    client.latency(redis_proxy, 60, stream="downstream")
    conn = redis_conn(redis_proxy)
    assert timed_ping(conn) >= 0.12
    conn.disconnect()


def test_latency_jitter_stays_in_range_and_varies(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    client.latency(redis_proxy, 60, jitter=40)
    conn = redis_conn(redis_proxy)
    times = [timed_ping(conn) for _ in range(12)]
    conn.disconnect()
    times.sort()
    assert times[0] >= 0.02 - 0.002  # never below latency - jitter
    # Never above latency + jitter, allowing scheduling noise (and one outlier) on a loaded machine.
    assert times[-2] <= 0.1 + 0.04 and times[-1] <= 0.1 + 0.2, times
    assert max(times) - min(times) > 0.01, times


def test_toxic_update_applies_to_live_connection(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    conn = redis_conn(redis_proxy)
    client.latency(redis_proxy, 20)
    assert timed_ping(conn) < 0.1
    updated = client.update_toxic(redis_proxy, "latency_downstream", latency=150)
    assert updated.attributes["latency"] == 150
    assert timed_ping(conn) >= 0.15
    conn.disconnect()


# -- bandwidth ----------------------------------------------------------------------------------------------


def test_bandwidth_limits_throughput(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    client.bandwidth(echo_proxy, 100)  # 100 KB/s downstream
    payload = b"x" * 50_000
    sock = connect(echo_proxy)
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    elapsed = time.monotonic() - start
    sock.close()
    assert 0.45 <= elapsed < 3.0, elapsed


def test_no_bandwidth_toxic_is_fast(echo_proxy: Proxy) -> None:
    payload = b"x" * 500_000
    sock = connect(echo_proxy)
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    assert time.monotonic() - start < 1.0
    sock.close()


def test_bytes_stay_in_order_while_toxics_come_and_go(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    # a link without toxics writes straight on; toxics added and removed mid-stream must not reorder a byte
    import threading

    payload = b"".join(b"%08d" % i for i in range(150_000))  # 1.2 MB of numbered records
    sock = connect(echo_proxy, timeout=20)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(recv_exactly(sock, len(payload))))
    reader.start()
    stream = "upstream"
    for i, offset in enumerate(range(0, len(payload), 60_000)):
        sock.sendall(payload[offset:offset + 60_000])
        if i % 4 == 0:
            stream = "downstream" if i % 8 else "upstream"
            client.latency(echo_proxy, 5, stream=stream)
        elif i % 4 == 2:
            client.remove_toxic(echo_proxy, f"latency_{stream}")
    reader.join(20)
    sock.close()
    assert got and got[0] == payload


# -- timeout ------------------------------------------------------------------------------------------------


def test_timeout_zero_holds_data_then_same_connection_recovers(
    client: ToxiproxyClient, redis_proxy: Proxy
) -> None:
    conn = redis_conn(redis_proxy, socket_timeout=0.3)
    assert timed_ping(conn) < 0.3
    client.cut(redis_proxy)
    conn.send_command("PING")
    with pytest.raises(redis.TimeoutError):
        conn.read_response(disconnect_on_error=False)
    time.sleep(0.2)  # held, not closed: the toxic never closes the connection with timeout=0
    client.heal(redis_proxy)
    # The held PING flows on the SAME connection once the toxic is gone.
    assert conn.read_response() in (b"PONG", "PONG")
    assert timed_ping(conn) < 0.3
    conn.disconnect()


def test_timeout_zero_makes_redis_client_time_out(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    r = redis.Redis(host=redis_proxy.host, port=redis_proxy.port, socket_timeout=0.3, retry=None)
    assert r.ping()
    client.timeout(redis_proxy, 0)
    with pytest.raises(redis.TimeoutError):
        r.ping()
    client.heal(redis_proxy)
    assert r.ping()
    r.close()


def test_timeout_positive_closes_connection_after_delay(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    sock = connect(echo_proxy)
    sock.sendall(b"hello")
    assert recv_exactly(sock, 5) == b"hello"
    client.timeout(echo_proxy, 200)
    start = time.monotonic()
    sock.sendall(b"dropped?")
    assert recv_until_eof(sock) == b""  # nothing comes through, then EOF
    elapsed = time.monotonic() - start
    assert 0.18 <= elapsed < 1.5, elapsed
    sock.close()


# -- reset_peer ---------------------------------------------------------------------------------------------


def test_reset_peer_resets_connection(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    sock = connect(redis_proxy)
    client.reset_peer(redis_proxy, 100)
    start = time.monotonic()
    sock.sendall(b"PING\r\n")
    with pytest.raises(ConnectionResetError):
        sock.recv(100)
    assert time.monotonic() - start >= 0.09
    sock.close()


def test_reset_peer_seen_by_redis_client(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    r = redis.Redis(host=redis_proxy.host, port=redis_proxy.port, socket_timeout=2, retry=None)
    client.reset_peer(redis_proxy, 0, stream="upstream")
    with pytest.raises(redis.ConnectionError) as info:
        r.ping()
    assert "reset" in str(info.value).lower()
    r.close()


# -- slicer -------------------------------------------------------------------------------------------------


def test_slicer_delivers_same_bytes_in_pieces(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    client.slicer(echo_proxy, average_size=10, size_variation=5, delay_us=3000)
    payload = bytes(range(256)) * 2
    sock = connect(echo_proxy)
    sock.sendall(payload)
    pieces = []
    total = 0
    while total < len(payload):
        data = sock.recv(65536)
        assert data
        pieces.append(data)
        total += len(data)
    sock.close()
    assert b"".join(pieces) == payload
    assert len(pieces) >= 10, [len(p) for p in pieces]
    assert max(len(p) for p in pieces) < 100


def test_slicer_keeps_redis_values_intact(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    r = redis.Redis(host=redis_proxy.host, port=redis_proxy.port, socket_timeout=5)
    value = bytes(range(256)) * 40
    r.set("proxy:slicer", value)
    client.slicer(redis_proxy, average_size=64, size_variation=32, delay_us=10)
    client.slicer(redis_proxy, average_size=64, size_variation=32, delay_us=10, stream="upstream")
    assert r.get("proxy:slicer") == value
    r.close()


# -- slow_close ---------------------------------------------------------------------------------------------


def test_slow_close_delays_close(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    def quit_time() -> float:
        sock = connect(redis_proxy)
        start = time.monotonic()
        sock.sendall(b"QUIT\r\n")
        assert recv_until_eof(sock).startswith(b"+OK")
        sock.close()
        return time.monotonic() - start

    assert quit_time() < 0.2
    client.slow_close(redis_proxy, 300)
    assert quit_time() >= 0.3


# -- limit_data ---------------------------------------------------------------------------------------------


def test_limit_data_closes_after_n_bytes(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    client.limit_data(echo_proxy, 100)
    sock = connect(echo_proxy)
    sock.sendall(b"a" * 60)
    assert recv_exactly(sock, 60) == b"a" * 60
    try:
        sock.sendall(b"b" * 300)
    except OSError:
        pass
    assert recv_until_eof(sock) == b"b" * 40
    sock.close()


def test_limit_data_upstream_limits_requests(client: ToxiproxyClient, echo_proxy: Proxy) -> None:
    client.limit_data(echo_proxy, 10, stream="upstream")
    sock = connect(echo_proxy)
    sock.sendall(b"0123456789abcdef")
    start = time.monotonic()
    # The connection ends once 10 bytes went up; whatever came back is at most their echo.
    assert b"0123456789".startswith(recv_until_eof(sock))
    assert time.monotonic() - start < 1.0
    sock.close()


# -- direction ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream, reaches_server", [("upstream", False), ("downstream", True)])
def test_stream_direction(
    client: ToxiproxyClient, redis_proxy: Proxy, redis_port: int, stream: str, reaches_server: bool
) -> None:
    direct = redis.Redis(port=redis_port)
    key = f"proxy:direction:{stream}"
    direct.delete(key)
    conn = redis_conn(redis_proxy, socket_timeout=0.3)
    client.timeout(redis_proxy, 0, stream=stream)
    conn.send_command("SET", key, "1")
    with pytest.raises(redis.TimeoutError):
        conn.read_response(disconnect_on_error=False)
    # upstream (client->server) held: Redis never saw the SET; downstream held: it ran, the reply is held.
    assert (direct.get(key) == b"1") is reaches_server
    client.heal(redis_proxy)
    assert conn.read_response() in (b"OK", "OK")
    assert direct.get(key) == b"1"
    conn.disconnect()
    direct.close()


# -- toxicity -----------------------------------------------------------------------------------------------


def test_toxicity_zero_never_applies(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    client.latency(redis_proxy, 300, toxicity=0.0)
    for _ in range(5):
        conn = redis_conn(redis_proxy)
        assert timed_ping(conn) < 0.2
        conn.disconnect()


def _toxicity_pattern(redis_port: int) -> list[bool]:
    """Which of 10 fresh connections drew a 50%-toxicity latency toxic (each checked twice for consistency)."""
    with ToxiproxyServer() as server, ToxiproxyClient(server.api_url) as c:
        proxy = c.create("redis", "127.0.0.1:0", f"127.0.0.1:{redis_port}")
        c.latency(proxy, 80, toxicity=0.5)
        pattern = []
        for _ in range(10):
            sock = connect(proxy)
            slow = []
            for _ in range(2):
                start = time.monotonic()
                sock.sendall(b"PING\r\n")
                assert recv_exactly(sock, 7) == b"+PONG\r\n"
                slow.append(time.monotonic() - start >= 0.08)
            sock.close()
            # The draw is per connection: every request on it behaves the same.
            assert slow[0] == slow[1]
            pattern.append(slow[0])
        return pattern


def test_toxicity_is_per_connection_and_seedable(monkeypatch: pytest.MonkeyPatch, redis_port: int) -> None:
    monkeypatch.setenv("CHAOS_PROXY_SEED", "1234")
    first = _toxicity_pattern(redis_port)
    assert 0 < sum(first) < len(first), first
    assert _toxicity_pattern(redis_port) == first  # same seed, same draws


# -- enable / disable ---------------------------------------------------------------------------------------


def test_disable_closes_and_refuses_then_enable_restores(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    conn = redis_conn(redis_proxy)
    assert timed_ping(conn) < 0.2
    client.disable(redis_proxy)
    with pytest.raises(redis.ConnectionError):
        conn.send_command("PING")
        conn.read_response()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=1)
    proxy = client.enable(redis_proxy)
    assert proxy.port == redis_proxy.port  # same port again
    conn = redis_conn(redis_proxy)
    assert timed_ping(conn) < 0.2
    conn.disconnect()


def test_unreachable_upstream_closes_client(client: ToxiproxyClient) -> None:
    proxy = client.create("nowhere", "127.0.0.1:0", f"127.0.0.1:{free_port()}")
    sock = connect(proxy)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass
    sock.close()
