"""The Toxiproxy HTTP API: shapes, defaults and error codes, through raw httpx and through the client."""

from __future__ import annotations

import socket

import httpx
import pytest
import redis

from chaos.cluster.ports import free_port
from chaos.proxy import ToxiproxyServer
from chaos.proxy.client import Proxy, ToxiproxyClient, ToxiproxyError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def http(proxy_server: ToxiproxyServer) -> httpx.Client:
    with httpx.Client(base_url=proxy_server.api_url, timeout=5) as c:
        yield c


def test_version(client: ToxiproxyClient, http: httpx.Client) -> None:
    assert client.version().startswith("2.")
    assert http.get("/version").json() == {"version": client.version()}


def test_create_returns_real_port_and_listing_shape(
    client: ToxiproxyClient, http: httpx.Client, redis_port: int
) -> None:
    resp = http.post(
        "/proxies", json={"name": "shape", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{redis_port}"}
    )
    assert resp.status_code == 201
    body = resp.json()
    assert body["name"] == "shape" and body["enabled"] is True and body["toxics"] == []
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    listing = http.get("/proxies").json()
    assert listing["shape"] == body
    assert client.get("shape").port == int(port)
    assert redis.Redis(port=int(port)).ping()


def test_create_disabled_proxy_does_not_listen(client: ToxiproxyClient, redis_port: int) -> None:
    proxy = client.create("off", "127.0.0.1:0", f"127.0.0.1:{redis_port}", enabled=False)
    assert proxy.enabled is False
    proxy = client.enable("off")
    assert proxy.enabled and proxy.port > 0


def test_toxic_defaults_and_crud(client: ToxiproxyClient, redis_proxy: Proxy, http: httpx.Client) -> None:
    resp = http.post(
        f"/proxies/{redis_proxy.name}/toxics", json={"type": "latency", "attributes": {"latency": 5}}
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 5, "jitter": 0},
    }
    client.add_toxic(redis_proxy, "bandwidth", stream="upstream", name="bw", rate=1000)
    assert [t.name for t in client.toxics(redis_proxy)] == ["latency_downstream", "bw"]
    assert client.get_toxic(redis_proxy, "bw").attributes == {"rate": 1000}
    assert [t.name for t in client.get(redis_proxy).toxics] == ["latency_downstream", "bw"]
    assert http.delete(f"/proxies/{redis_proxy.name}/toxics/bw").status_code == 204
    assert [t.name for t in client.toxics(redis_proxy)] == ["latency_downstream"]


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/proxies/nope", None, 404),
        ("POST", "/proxies/nope", {"enabled": False}, 404),
        ("DELETE", "/proxies/nope", None, 404),
        ("GET", "/proxies/nope/toxics", None, 404),
        ("POST", "/proxies/nope/toxics", {"type": "latency"}, 404),
        ("GET", "/proxies/{p}/toxics/nope", None, 404),
        ("DELETE", "/proxies/{p}/toxics/nope", None, 404),
        ("POST", "/proxies/{p}/toxics/nope", {"attributes": {}}, 404),
        ("POST", "/proxies/{p}/toxics", {"type": "explode"}, 400),
        ("POST", "/proxies/{p}/toxics", {}, 400),
        ("POST", "/proxies/{p}/toxics", {"type": "latency", "stream": "sideways"}, 400),
        ("POST", "/proxies/{p}/toxics", {"type": "latency", "attributes": {"latency": -1}}, 400),
        ("POST", "/proxies/{p}/toxics", {"type": "latency", "attributes": {"latency": "slow"}}, 400),
        ("POST", "/proxies/{p}/toxics", {"type": "latency", "attributes": {"latancy": 10}}, 400),
        ("POST", "/proxies/{p}/toxics", {"type": "latency", "toxicity": 1.5}, 400),
        ("POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0"}, 400),
        ("POST", "/proxies", {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}, 400),
        ("POST", "/proxies", {"name": "x", "listen": "nonsense", "upstream": "127.0.0.1:1"}, 400),
        ("POST", "/populate", {"not": "a list"}, 400),
        ("GET", "/nothing-here", None, 404),
    ],
)
def test_error_codes(
    http: httpx.Client, redis_proxy: Proxy, method: str, path: str, body: object, status: int
) -> None:
    resp = http.request(method, path.format(p=redis_proxy.name), json=body)
    assert resp.status_code == status, resp.text
    data = resp.json()
    assert data["status"] == status and isinstance(data["error"], str) and data["error"]


def test_bad_json_is_400(http: httpx.Client) -> None:
    resp = http.post("/proxies", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert "bad request body" in resp.json()["error"]


def test_duplicates_are_409(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError) as info:
        client.create(redis_proxy.name, "127.0.0.1:0", redis_proxy.upstream)
    assert info.value.status == 409 and "already exists" in info.value.message
    client.latency(redis_proxy, 1)
    with pytest.raises(ToxiproxyError) as info:
        client.latency(redis_proxy, 2)
    assert info.value.status == 409


def test_client_raises_message_for_unknown_toxic(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError, match="invalid toxic type"):
        client.add_toxic(redis_proxy, "explode")


def test_listen_address_in_use_is_an_error(client: ToxiproxyClient, redis_port: int) -> None:
    with pytest.raises(ToxiproxyError) as info:
        client.create("clash", f"127.0.0.1:{redis_port}", f"127.0.0.1:{redis_port}")
    assert info.value.status == 500
    assert "clash" not in client.proxies()


def test_browser_user_agent_is_refused(http: httpx.Client) -> None:
    assert http.get("/proxies", headers={"User-Agent": "Mozilla/5.0"}).status_code == 403


def test_reset_enables_all_and_removes_toxics(
    client: ToxiproxyClient, redis_port: int, http: httpx.Client
) -> None:
    a = client.create("a", "127.0.0.1:0", f"127.0.0.1:{redis_port}")
    b = client.create("b", "127.0.0.1:0", f"127.0.0.1:{redis_port}")
    client.latency(a, 500)
    client.cut(b)
    client.disable(a)
    assert http.post("/reset").status_code == 204
    for proxy in (a, b):
        state = client.get(proxy)
        assert state.enabled and state.toxics == [] and state.port == proxy.port
        assert redis.Redis(port=proxy.port, socket_timeout=0.4).ping()


def test_populate_is_idempotent_and_replaces_changed(
    client: ToxiproxyClient, redis_port: int, echo_port: int, http: httpx.Client
) -> None:
    wanted = [
        {"name": "p1", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{redis_port}"},
        {"name": "p2", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo_port}", "enabled": False},
    ]
    resp = http.post("/populate", json=wanted)
    assert resp.status_code == 201
    first = {p["name"]: p for p in resp.json()["proxies"]}
    assert set(first) == {"p1", "p2"} and first["p2"]["enabled"] is False
    client.latency("p1", 5)
    again = {p.name: p for p in client.populate(wanted)}
    assert again["p1"].listen == first["p1"]["listen"]
    assert [t.name for t in again["p1"].toxics] == ["latency_downstream"]  # untouched
    assert set(client.proxies()) == {"p1", "p2"}
    changed = [{"name": "p1", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo_port}"}]
    replaced = client.populate(changed)[0]
    assert replaced.upstream == f"127.0.0.1:{echo_port}" and replaced.toxics == []


def test_update_upstream_restarts_proxy(client: ToxiproxyClient, redis_proxy: Proxy, echo_port: int) -> None:
    conn = socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=2)
    conn.sendall(b"PING\r\n")
    assert conn.recv(7) == b"+PONG\r\n"
    updated = client.update(redis_proxy, upstream=f"127.0.0.1:{echo_port}")
    assert updated.upstream == f"127.0.0.1:{echo_port}" and updated.port == redis_proxy.port
    assert conn.recv(7) == b""  # existing connections were dropped
    conn.close()
    with socket.create_connection((updated.host, updated.port), timeout=2) as s:
        s.sendall(b"echo me")
        assert s.recv(7) == b"echo me"


def test_delete_closes_listener(client: ToxiproxyClient, redis_proxy: Proxy) -> None:
    client.delete(redis_proxy)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=1)
    with pytest.raises(ToxiproxyError) as info:
        client.get(redis_proxy)
    assert info.value.status == 404


def test_client_reports_unreachable_server() -> None:
    port = free_port()
    with ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1) as c, pytest.raises(ToxiproxyError):
        c.version()
