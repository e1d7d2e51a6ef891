"""The protocol every backend implements: nodes that can be started, stopped, killed, paused and observed.

Nothing above this module knows whether a node is a local process or a container. The nemesis, the workload and
the pytest fixtures talk to ``Node``/``WorkerNode``/``RedisNode`` and to the ``Backend`` that makes them.
"""

from __future__ import annotations

import os
import signal
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

from chaos.waiting import wait_until

if TYPE_CHECKING:
    import redis as redis_lib

    from chaos.target import Target

Role = Literal["redis", "proxy", "api", "worker"]


@dataclass(frozen=True)
class Endpoint:
    """Where the host (the test process) reaches a node. Re-read it after a restart: container ports change."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Persistence:
    """How Redis keeps data across a restart. Explicit, so an empty broker after a restart is a choice."""

    aof: bool = True
    fsync: Literal["always", "everysec", "no"] = "always"

    def redis_args(self) -> list[str]:
        if self.aof:
            return ["--appendonly", "yes", "--appendfsync", self.fsync, "--save", ""]
        return ["--appendonly", "no", "--save", ""]


def api_answers(base_url: str, probe_path: str | None, timeout: float = 1.0) -> bool:
    """Is the API up: its probe path answers 200, or (no path declared) its port accepts a connection?"""
    if probe_path is not None:
        return httpx.get(base_url + probe_path, timeout=timeout).status_code == 200
    host, _, port = base_url.removeprefix("http://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout):
        return True


class Node(ABC):
    """One process of the stack (or one container)."""

    name: str
    role: Role

    def __init__(self, name: str, role: Role) -> None:
        self.name = name
        self.role = role
        self.paused = False

    @abstractmethod
    def start(self) -> None:
        """Start and wait until ready (raise ClusterError when it does not get ready in time)."""

    def spawn(self) -> None:
        """Start without waiting for readiness (so several nodes can come up in parallel)."""
        self.start()

    def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: B027 - a node that is ready once started
        """Wait until the node serves again (after ``spawn`` or after a fault it recovers from)."""

    @abstractmethod
    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop: SIGTERM and wait ``timeout`` (then SIGKILL) when graceful, SIGKILL at once otherwise."""

    @abstractmethod
    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process (a SIGKILL reaches the whole process group / container)."""

    @abstractmethod
    def pause(self) -> None:
        """Freeze every process of the node (SIGSTOP / docker pause)."""

    @abstractmethod
    def resume(self) -> None:
        """Undo ``pause``."""

    @abstractmethod
    def alive(self) -> bool:
        """The main process exists (paused counts as alive)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Host pids of every process of the node, main first."""

    @abstractmethod
    def logs(self) -> str:
        """Everything the node printed so far (across restarts)."""

    @property
    @abstractmethod
    def endpoint(self) -> Endpoint | None:
        """Where the host reaches it, or None for nodes that listen nowhere (workers)."""

    def restart(self, graceful: bool = True, timeout: float = 10.0) -> None:
        self.stop(graceful=graceful, timeout=timeout)
        self.start()

    def wait_exit(self, timeout: float) -> bool:
        """Wait until the node is gone; True when it exited within ``timeout``."""
        return bool(wait_until(lambda: not self.alive(), timeout, what=f"{self.name} to exit", error=None))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} alive={self.alive()} paused={self.paused}>"


class WorkerNode(Node):
    """A Celery worker: a main process and its pool children."""

    @abstractmethod
    def child_pids(self) -> list[int]:
        """Pids of the pool children (prefork), as the host sees them."""

    def kill_child(self, sig: int = signal.SIGKILL, pid: int | None = None) -> int | None:
        """Signal one pool child (``pid`` if it is one of ours, else the first); return its pid, or None.

        Host pids on both backends: containers share the host's kernel, so the host can signal their processes.
        """
        children = self.child_pids()
        if pid is not None and pid not in children:
            return None
        victim = pid if pid is not None else (children[0] if children else None)
        if victim is None:
            return None
        try:
            os.kill(victim, sig)
        except ProcessLookupError:
            return None
        return victim


class RedisNode(Node):
    """The broker. Its persistence and data dir are explicit parameters."""

    persistence: Persistence

    @abstractmethod
    def client(self, timeout: float = 1.0) -> redis_lib.Redis:
        """A redis-py client from the host, with bounded timeouts and no retries (faults must show)."""

    @property
    def url(self) -> str:
        ep = self.endpoint
        assert ep is not None
        return f"redis://{ep.host}:{ep.port}/0"


class ProxyNode(Node):
    """The network-fault node: a Toxiproxy-compatible server in front of Redis (and the API)."""

    @property
    def api_url(self) -> str:
        ep = self.endpoint
        assert ep is not None
        return ep.url


class Backend(ABC):
    """Makes nodes of one kind (local processes or containers) for one cluster."""

    name: str

    def __init__(self, target: Target, workdir: Path, run_id: str) -> None:
        self.target = target
        self.workdir = workdir
        self.run_id = run_id

    @abstractmethod
    def make_redis(self, persistence: Persistence) -> RedisNode: ...

    @abstractmethod
    def make_proxy(self) -> ProxyNode: ...

    @abstractmethod
    def link_spec(self, link: str, redis: RedisNode, api: Node | None) -> tuple[str, str]:
        """(listen, upstream) of proxy ``link`` as the proxy process sees them; listen port 0 = any."""

    @abstractmethod
    def link_address(self, proxy: ProxyNode, listen: str, *, from_host: bool) -> tuple[str, int]:
        """Where a target process (or the host, when ``from_host``) reaches a proxy listening on ``listen``."""

    @abstractmethod
    def make_api(self, values: dict[str, object]) -> Node:
        """The API node; ``values`` fill the target's templates (redis_url, data_dir...)."""

    @abstractmethod
    def make_worker(self, name: str, values: dict[str, object]) -> WorkerNode:
        """A worker node named ``name`` (worker-0, worker-1...)."""

    @abstractmethod
    def data_dir(self) -> str:
        """The ``{data_dir}`` placeholder as the target's processes see it."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing beyond their nodes
        """Release what the backend holds beyond its nodes (networks, volumes)."""
