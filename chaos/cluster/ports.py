"""Free ports: the kernel picks one nobody listens on right now.

The pick can be lost to another process before we bind it; ``chaos.cluster.ownership`` is what catches that.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
