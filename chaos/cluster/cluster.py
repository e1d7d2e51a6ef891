"""The cluster handle: one whole stack (redis, fault proxy, api, workers) built by a backend, held and reset.

Topology: workers and the API each reach Redis through their own proxy link (``workers_redis``, ``api_redis``),
and clients may reach the API through ``client_api``, so a network fault can hit one link and not another.
A target without an HTTP API (``client = "celery"``, no ``api`` command) has no API node and no ``client_api``
link; its producer, the framework's Celery client, reaches Redis through ``api_redis`` (``producer_values``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chaos.cluster.base import Backend, Node, Persistence, ProxyNode, RedisNode, WorkerNode
from chaos.cluster.cleanup import forget_run, kill_processes, our_processes, remove_containers
from chaos.errors import BadArguments, ClusterError
from chaos.proxy.client import ToxiproxyClient
from chaos.target import Target

LINKS = ("workers_redis", "api_redis", "client_api")


def make_backend(name: str, target: Target, workdir: Path, run_id: str) -> Backend:
    if name == "local":
        from chaos.cluster.local import LocalBackend

        return LocalBackend(target, workdir, run_id)
    if name == "docker":
        from chaos.cluster.docker import DockerBackend

        return DockerBackend(target, workdir, run_id)
    raise BadArguments(f"unknown backend {name!r}: use 'local' or 'docker'")


class Cluster:
    """A running stack. Use as a context manager, or call ``start()`` and ``close()`` (close always cleans up)."""

    def __init__(self, target: Target, backend: str = "local", workers: int | None = None,
                 persistence: Persistence | None = None, workdir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.target = target if not env else target.with_env(env)
        self.run_id = f"cc-{uuid.uuid4().hex[:10]}"
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = make_backend(backend, self.target, self.workdir, self.run_id)
        self.n_workers = self.target.workers if workers is None else workers
        if self.n_workers < 0:
            raise BadArguments("the number of workers cannot be negative")
        self.persistence = persistence or Persistence(aof=self.target.redis_persistence == "aof")
        self.redis: RedisNode | None = None
        self.proxy_node: ProxyNode | None = None
        self.proxy: ToxiproxyClient | None = None
        self.api: Node | None = None
        self.workers: list[WorkerNode] = []
        self._next_worker = 0
        self._values: dict[str, dict[str, object]] = {}
        self._listen: dict[str, str] = {}  # proxy link -> where it listens, as the proxy process sees it
        self.client_api_endpoint: tuple[str, int] | None = None
        self.bring_up_seconds: float | None = None
        self.submitted: set[str] = set()  # task ids earlier runs on this cluster were given: their leftovers
        self._log_marks: dict[str, int] = {}  # worker -> the length of its log when the current run began

    # bring-up ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        t0 = time.monotonic()
        self.redis = self.backend.make_redis(self.persistence)
        self.redis.start()
        self.proxy_node = self.backend.make_proxy()
        self.proxy_node.start()
        self.proxy = ToxiproxyClient(self.proxy_node.api_url)
        data_dir = self.backend.data_dir()
        for role, link in (("worker", "workers_redis"), ("api", "api_redis")):
            listen, upstream = self.backend.link_spec(link, self.redis, None)
            p = self.proxy.create(link, listen, upstream)
            self._listen[link] = p.listen
            host, port = self.backend.link_address(self.proxy_node, p.listen, from_host=False)
            self._values[role] = {"redis_url": f"redis://{host}:{port}/0", "redis_host": host,
                                  "redis_port": port, "data_dir": data_dir}
        with ThreadPoolExecutor(max_workers=1) as pool:  # the API comes up while the workers do
            api_up = None
            if self.target.api_command is not None:
                self.api = self.backend.make_api(self._values["api"])
                api_up = pool.submit(self.api.start)
            self.scale(self.n_workers)
            if api_up is not None:
                api_up.result()
                listen, upstream = self.backend.link_spec("client_api", self.redis, self.api)
                p = self.proxy.create("client_api", listen, upstream)
                self.client_api_endpoint = self.backend.link_address(self.proxy_node, p.listen, from_host=True)
        self.bring_up_seconds = time.monotonic() - t0

    # workers -----------------------------------------------------------------------------------------------
    def add_worker(self, start: bool = True) -> WorkerNode:
        name = f"worker-{self._next_worker}"
        self._next_worker += 1
        w = self.backend.make_worker(name, self._values["worker"])
        self.workers.append(w)
        if start:
            w.start()
        return w

    def remove_worker(self, worker: WorkerNode | None = None, graceful: bool = True,
                      timeout: float | None = None) -> WorkerNode:
        """Stop a worker (the last by default; a graceful stop waits the target's ``stop_timeout_s``) and drop it."""
        if not self.workers:
            raise ClusterError("no worker to remove")
        w = worker or self.workers[-1]
        w.stop(graceful=graceful, timeout=self.target.timing.stop_timeout_s if timeout is None else timeout)
        self.workers.remove(w)
        return w

    def scale(self, n: int) -> None:
        """Start or stop workers until exactly ``n`` run (new ones start in parallel)."""
        while len(self.workers) > n:
            self.remove_worker()
        new = [self.add_worker(start=False) for _ in range(n - len(self.workers))]
        for w in new:
            w.spawn()
        with ThreadPoolExecutor(max_workers=max(1, len(new))) as pool:
            list(pool.map(lambda w: w.wait_ready(), new))

    def set_worker_count(self, n: int) -> None:
        """Scale to ``n`` workers and keep ``n`` from now on: ``heal()`` restores this count, not the first one."""
        self.scale(n)
        self.n_workers = n

    # views -------------------------------------------------------------------------------------------------
    def _need_api(self) -> None:
        if self.target.api_command is None:
            raise ClusterError(f"the target has no HTTP API ({self.target.name!r} declares no api command)")

    @property
    def api_url(self) -> str:
        """The API as the host reaches it directly (re-read: a container's port changes on restart)."""
        self._need_api()
        assert self.api is not None and self.api.endpoint is not None, "cluster not started"
        return self.api.endpoint.url

    @property
    def proxied_api_url(self) -> str:
        """The API through the ``client_api`` proxy link, for client-side network faults."""
        self._need_api()
        assert self.client_api_endpoint is not None, "cluster not started"
        host, port = self.client_api_endpoint
        return f"http://{host}:{port}"

    def link_address(self, link: str) -> tuple[str, int]:
        """Where fault-proxy ``link`` (``workers_redis``, ``api_redis``) listens, as a process on the host reaches
        it. Re-read after a proxy restart."""
        assert self.proxy_node is not None and link in self._listen, "cluster not started"
        return self.backend.link_address(self.proxy_node, self._listen[link], from_host=True)

    def link_url(self, link: str) -> str:
        """The Redis URL of fault-proxy ``link`` as a process on the host reaches it (a producer or worker of the
        framework's own, on the same link as the target's)."""
        host, port = self.link_address(link)
        return f"redis://{host}:{port}/0"

    def producer_values(self) -> dict[str, object]:
        """The API role's template values (``redis_url``, ``redis_host``, ``redis_port``, ``data_dir``) as a
        process on the host reaches them: through the ``api_redis`` link, so its network faults hit a producer
        in the framework's process (the Celery client) as they hit the API. Re-read after a proxy restart."""
        host, port = self.link_address("api_redis")
        # both backends keep {data_dir} at <workdir>/data on the host (a container mounts it elsewhere)
        return {"redis_url": f"redis://{host}:{port}/0", "redis_host": host, "redis_port": port,
                "data_dir": str(self.workdir / "data")}

    def nodes(self) -> list[Node]:
        found: list[Node | None] = [self.redis, self.proxy_node, self.api, *self.workers]
        return [n for n in found if n is not None]

    def node(self, name: str) -> Node:
        for n in self.nodes():
            if n.name == name:
                return n
        raise BadArguments(f"no node named {name!r}; nodes: {[n.name for n in self.nodes()]}")

    def logs(self) -> dict[str, str]:
        return {n.name: n.logs() for n in self.nodes()}

    def mark_worker_logs(self) -> None:
        """Remember where each worker's log stands, so ``worker_logs_since_mark`` reads only what a run added."""
        self._log_marks = {w.name: len(w.logs()) for w in self.workers}

    def worker_logs_since_mark(self) -> dict[str, str]:
        """Each worker's log since ``mark_worker_logs`` (all of it for a worker started since, or never marked)."""
        out = {}
        for w in self.workers:
            text, mark = w.logs(), self._log_marks.get(w.name, 0)
            out[w.name] = text[mark:] if len(text) >= mark else text
        return out

    # healing -----------------------------------------------------------------------------------------------
    def heal(self, timeout: float = 60.0) -> None:
        """Undo every fault: resume paused nodes, clear toxics, restart what died, restore the worker count.

        This is the nemesis's final heal and the fast reset between tests that share a cluster.
        """
        for n in self.nodes():
            if n.paused:
                n.resume()
        if self.redis is not None and not self.redis.alive():
            self.redis.start()
        if self.proxy_node is not None and not self.proxy_node.alive():
            raise ClusterError("the fault proxy died; the cluster cannot be healed (start a fresh one)")
        if self.proxy is not None:
            self.proxy.reset()
        if self.api is not None and not self.api.alive():
            self.api.start()
        dead = [w for w in self.workers if not w.alive()]
        for w in dead:
            w.start()
        self.scale(self.n_workers)

    def reset(self) -> None:
        """Heal, then drop leftover broker messages so the next test starts from an empty queue."""
        self.heal()
        assert self.redis is not None
        c = self.redis.client()
        try:
            for q in self.target.queues:
                keys = c.keys(f"{q}*")
                if keys:
                    c.delete(*keys)
        finally:
            c.close()

    # teardown ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything, whatever state it is in; then sweep by mark so nothing of this run survives."""
        errors: list[str] = []
        for n in reversed(self.nodes()):
            try:
                n.stop(graceful=False)
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(f"{n.name}: {exc}")
        if self.proxy is not None:
            self.proxy.close()
        try:
            self.backend.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"backend: {exc}")
        kill_processes(our_processes(self.run_id))
        forget_run(self.run_id)
        remove_containers(self.run_id)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.redis = self.proxy_node = self.api = None
        self.proxy = None
        self._listen = {}
        self.workers = []
        if errors:
            raise ClusterError("cleanup had errors: " + "; ".join(errors))

    def keep_logs(self, dest: Path) -> None:
        """Copy every node's log into ``dest`` (reports keep them as evidence)."""
        dest.mkdir(parents=True, exist_ok=True)
        for name, text in self.logs().items():
            (dest / f"{name}.log").write_text(text)

