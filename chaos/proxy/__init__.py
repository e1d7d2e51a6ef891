"""A TCP fault proxy speaking Toxiproxy's HTTP API, in pure asyncio Python.

The chaos framework puts it between clients and Redis (one proxy per link, e.g. API->Redis and
workers->Redis) and in front of HTTP APIs; where users run a real Toxiproxy, that can replace it, since the
API and toxic names and attributes are the same. Run it with ``python -m chaos.proxy`` or embed it with
:class:`ToxiproxyServer`; drive it with :class:`chaos.proxy.client.ToxiproxyClient`.
"""

from chaos.proxy.runner import ToxiproxyServer
from chaos.proxy.server import VERSION

__all__ = ["ToxiproxyServer", "VERSION"]
