"""A small synchronous Toxiproxy client (httpx), for this proxy or a real Toxiproxy.

Only documented Toxiproxy 2.x endpoints are used (proxy updates go through ``POST``, which every 2.x
server accepts), so scenarios written against it run unchanged on either server. Server errors raise
:class:`ToxiproxyError` carrying the server's message and status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_TIMEOUT = 10.0


class ToxiproxyError(Exception):
    """The server refused a request (or could not be reached); ``status`` is the HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.message = message
        self.status = status


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Toxic:
        return cls(
            name=data["name"],
            type=data["type"],
            stream=data.get("stream", "downstream"),
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )


@dataclass
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: list[Toxic] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proxy:
        return cls(
            name=data["name"],
            listen=data["listen"],
            upstream=data["upstream"],
            enabled=bool(data.get("enabled", True)),
            toxics=[Toxic.from_json(t) for t in data.get("toxics") or []],
        )

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0].strip("[]")
        # A wildcard listen is reached through loopback.
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def _name(proxy: str | Proxy) -> str:
    return proxy.name if isinstance(proxy, Proxy) else proxy


class ToxiproxyClient:
    """Drive a Toxiproxy(-compatible) server at ``api_url`` (e.g. ``http://127.0.0.1:8474``)."""

    def __init__(self, api_url: str = "http://127.0.0.1:8474", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_url = api_url.rstrip("/")
        # A real Toxiproxy rejects browser user agents; httpx's default is fine, but be explicit.
        self._http = httpx.Client(
            base_url=self.api_url, timeout=timeout, headers={"User-Agent": "chaos-toxiproxy-client"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(f"{method} {self.api_url}{path} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text.strip() or response.reason_phrase
            raise ToxiproxyError(str(message).strip(), response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # -- server ---------------------------------------------------------------------------------------------

    def version(self) -> str:
        data = self._request("GET", "/version")
        # Toxiproxy >= 2.6 answers {"version": ...}; older ones answer the bare version string.
        return str(data.get("version")) if isinstance(data, dict) else str(data).strip()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._request("POST", "/reset")

    # -- proxies --------------------------------------------------------------------------------------------

    def proxies(self) -> dict[str, Proxy]:
        return {name: Proxy.from_json(p) for name, p in self._request("GET", "/proxies").items()}

    def create(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        """Create a proxy; with port 0 in ``listen`` the returned proxy carries the real port."""
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(self._request("POST", "/proxies", body))

    def get(self, name: str | Proxy) -> Proxy:
        return Proxy.from_json(self._request("GET", f"/proxies/{_name(name)}"))

    def update(self, name: str | Proxy, **fields: Any) -> Proxy:
        """Change ``listen``, ``upstream`` and/or ``enabled``."""
        return Proxy.from_json(self._request("POST", f"/proxies/{_name(name)}", fields))

    def delete(self, name: str | Proxy) -> None:
        self._request("DELETE", f"/proxies/{_name(name)}")

    def populate(self, proxies: list[dict[str, Any] | Proxy]) -> list[Proxy]:
        """Create or replace proxies in bulk; proxies already matching are left untouched."""
        body = [
            {"name": p.name, "listen": p.listen, "upstream": p.upstream, "enabled": p.enabled}
            if isinstance(p, Proxy)
            else p
            for p in proxies
        ]
        data = self._request("POST", "/populate", body)
        return [Proxy.from_json(p) for p in (data or {}).get("proxies") or []]

    def enable(self, name: str | Proxy) -> Proxy:
        return self.update(name, enabled=True)

    def disable(self, name: str | Proxy) -> Proxy:
        """Take the proxy down: its connections are closed and new ones refused."""
        return self.update(name, enabled=False)

    # -- toxics ---------------------------------------------------------------------------------------------

    def toxics(self, proxy: str | Proxy) -> list[Toxic]:
        return [Toxic.from_json(t) for t in self._request("GET", f"/proxies/{_name(proxy)}/toxics")]

    def add_toxic(
        self,
        proxy: str | Proxy,
        type: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: Any,
    ) -> Toxic:
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        if name:
            body["name"] = name
        return Toxic.from_json(self._request("POST", f"/proxies/{_name(proxy)}/toxics", body))

    def get_toxic(self, proxy: str | Proxy, name: str) -> Toxic:
        return Toxic.from_json(self._request("GET", f"/proxies/{_name(proxy)}/toxics/{name}"))

    def update_toxic(
        self, proxy: str | Proxy, name: str, toxicity: float | None = None, **attributes: Any
    ) -> Toxic:
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return Toxic.from_json(self._request("POST", f"/proxies/{_name(proxy)}/toxics/{name}", body))

    def remove_toxic(self, proxy: str | Proxy, name: str) -> None:
        self._request("DELETE", f"/proxies/{_name(proxy)}/toxics/{name}")

    # -- helpers --------------------------------------------------------------------------------------------

    def latency(
        self, proxy: str | Proxy, ms: int, jitter: int = 0, stream: str = "downstream", **kw: Any
    ) -> Toxic:
        return self.add_toxic(proxy, "latency", stream, latency=int(ms), jitter=int(jitter), **kw)

    def bandwidth(self, proxy: str | Proxy, rate_kbps: int, stream: str = "downstream", **kw: Any) -> Toxic:
        return self.add_toxic(proxy, "bandwidth", stream, rate=int(rate_kbps), **kw)

    def slow_close(self, proxy: str | Proxy, delay_ms: int, stream: str = "downstream", **kw: Any) -> Toxic:
        return self.add_toxic(proxy, "slow_close", stream, delay=int(delay_ms), **kw)

    def timeout(self, proxy: str | Proxy, timeout_ms: int, stream: str = "downstream", **kw: Any) -> Toxic:
        return self.add_toxic(proxy, "timeout", stream, timeout=int(timeout_ms), **kw)

    def reset_peer(
        self, proxy: str | Proxy, timeout_ms: int = 0, stream: str = "downstream", **kw: Any
    ) -> Toxic:
        return self.add_toxic(proxy, "reset_peer", stream, timeout=int(timeout_ms), **kw)

    def slicer(
        self,
        proxy: str | Proxy,
        average_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        stream: str = "downstream",
        **kw: Any,
    ) -> Toxic:
        return self.add_toxic(
            proxy,
            "slicer",
            stream,
            average_size=int(average_size),
            size_variation=int(size_variation),
            delay=int(delay_us),
            **kw,
        )

    def limit_data(self, proxy: str | Proxy, nbytes: int, stream: str = "downstream", **kw: Any) -> Toxic:
        return self.add_toxic(proxy, "limit_data", stream, bytes=int(nbytes), **kw)

    def cut(self, proxy: str | Proxy) -> None:
        """Blackhole the link both ways without closing it (timeout 0): bytes are held until :meth:`heal`."""
        for stream in ("upstream", "downstream"):
            self.add_toxic(proxy, "timeout", stream, name=f"cut_{stream}", timeout=0)

    def heal(self, proxy: str | Proxy) -> None:
        """Undo every fault on one proxy: remove all its toxics and enable it."""
        for toxic in self.toxics(proxy):
            try:
                self.remove_toxic(proxy, toxic.name)
            except ToxiproxyError as exc:
                if exc.status != 404:  # removed concurrently: fine
                    raise
        self.enable(proxy)
