"""The ``docker`` backend: every node is a container of the target image on one user-defined network per cluster.

Containers are made with testcontainers (``DockerContainer``, ``Network``) and driven afterwards with the docker
SDK, so a stopped node is started again (``docker start``) rather than re-created: its logs, its name and its data
survive a restart, as a real host's would. What the host sees:

* every container and the network carry ``cleanup.labels(run_id)`` and are named ``<run_id>-<node>``;
* aliases on the network: ``redis``, ``toxiproxy``, ``api``, ``worker-N``; target processes reach Redis and the API
  through the proxy container (``toxiproxy:16379``...), never directly;
* ports are published on 127.0.0.1 only, on random host ports that change at every start: ``endpoint`` is
  re-read from Docker after each start, so always ask the node again after a restart;
* every container runs with ``init=True``: PID 1 is docker-init, which forwards signals to the real process, so
  ``kill(SIGTERM)`` reaches Celery's main process and killing the server process inside really ends the container;
* ``pids()`` are host pids (``State.Pid`` and its descendants via psutil), so pool children are signalled from the
  host with ``os.kill``;
* Redis's ``/data`` and the shared ``{data_dir}`` (``/data-shared``, SQLite with WAL across containers on one
  kernel) are bind mounts under the cluster's workdir, removed with it.
"""

from __future__ import annotations

import os

# testcontainers reads its configuration at import: set it first, and only where the user did not.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk would be pulled: no registry here
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")  # /.dockerenv would select gateway_ip
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
os.environ.setdefault("TC_POOLING_INTERVAL", "0.1")

import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import docker  # noqa: E402
import docker.errors  # noqa: E402
import psutil  # noqa: E402
import redis as redis_lib  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402
from testcontainers.core.wait_strategies import (  # noqa: E402
    HttpWaitStrategy,
    LogMessageWaitStrategy,
    PortWaitStrategy,
    WaitStrategy,
)

from chaos import probe  # noqa: E402
from chaos.cluster.base import Backend, Endpoint, Node, Persistence, ProxyNode, RedisNode, Role, WorkerNode  # noqa: E402
from chaos.cluster.cleanup import LABEL_RUN, labels, mark  # noqa: E402
from chaos.cluster.ownership import ForeignEndpoint, verified_connect  # noqa: E402
from chaos.errors import ClusterError  # noqa: E402
from chaos.target import Target  # noqa: E402
from chaos.waiting import wait_until  # noqa: E402

log = logging.getLogger("chaos.cluster.docker")

PYTHON = "/opt/venv/bin/python"
PROXY_API_PORT = 8474
API_PORT = 8000
REDIS_PORT = 6379
SHARED_DATA = "/data-shared"
LINK_PORTS = {"workers_redis": 16379, "api_redis": 26379, "client_api": 18000}
LOOPBACK = "127.0.0.1"
IMAGE_ENV = "CELERY_CHAOS_IMAGE"  # use this image instead of building/finding the target's


class DockerNode(Node):
    """A container made once (testcontainers) and then started, stopped, killed and paused in place."""

    ready_timeout = 60.0
    publish: tuple[int, ...] = ()

    def __init__(self, backend: DockerBackend, name: str, role: Role, command: list[str],
                 env: dict[str, str] | None = None, volumes: dict[str, str] | None = None) -> None:
        super().__init__(name, role)
        self.backend = backend
        self.command = command
        self.env = {**(env or {}), **mark(backend.run_id), "PYTHONUNBUFFERED": "1"}
        self.volumes = volumes or {}
        self.container_name = f"{backend.run_id}-{name}"
        self.tc: DockerContainer | None = None
        self.container: Any | None = None  # docker.models.containers.Container
        self._started_at = 0.0
        self._ports: dict[int, int] = {}
        self._last_logs = ""
        self._lock = threading.Lock()

    # the testcontainers WaitStrategyTarget protocol, over *this start* of the container ---------------------
    def get_container_host_ip(self) -> str:
        return LOOPBACK

    def get_exposed_port(self, port: int) -> int:
        self._read_ports()
        if port not in self._ports:
            raise ClusterError(f"{self.name}: port {port} is not published")
        return self._ports[port]

    def get_wrapped_container(self) -> Any:
        return self._c

    def get_logs(self) -> tuple[bytes, bytes]:
        """stdout and stderr since this start (wait strategies must not match the previous run's lines)."""
        since = self._started_at or None
        c = self._c
        return (c.logs(stdout=True, stderr=False, since=since), c.logs(stdout=False, stderr=True, since=since))

    def reload(self) -> None:
        self._c.reload()

    @property
    def status(self) -> str:
        self._c.reload()
        return str(self._c.status)

    # lifecycle ---------------------------------------------------------------------------------------------
    @property
    def _c(self) -> Any:
        if self.container is None:
            raise ClusterError(f"{self.name} was never started")
        return self.container

    def _make(self) -> DockerContainer:
        tc = DockerContainer(self.backend.image, env=self.env, docker_client_kw={"timeout": 60})
        tc.with_command(self.command).with_name(self.container_name).with_network(self.backend.network)
        tc.with_network_aliases(self.name)
        for port in self.publish:
            tc.ports[f"{port}/tcp"] = (LOOPBACK, None)  # type: ignore[assignment]  # loopback only, random port
        for host, path in self.volumes.items():
            tc.with_volume_mapping(host, path, mode="rw")
        tc.with_kwargs(init=True, hostname=self.name, labels=labels(self.backend.run_id), stop_signal="SIGTERM")
        return tc

    def spawn(self) -> None:
        with self._lock:
            if self.container is None:
                self.tc = self._make()
                self._started_at = time.time()
                try:
                    self.tc.start()  # create + start, no wait strategy here (wait_ready does it)
                except docker.errors.APIError as exc:
                    raise ClusterError(f"{self.name}: docker could not start {self.backend.image}: {exc}") from exc
                self.container = self.tc.get_wrapped_container()
            else:
                if self.alive():
                    raise ClusterError(f"{self.name} is already running ({self.container_name})")
                self._started_at = time.time()
                try:
                    self._c.start()
                except docker.errors.APIError as exc:
                    raise ClusterError(f"{self.name}: docker start failed: {exc}") from exc
            self.paused = False
            self._ports = {}

    def start(self) -> None:
        self.spawn()
        self.wait_ready(self.ready_timeout)

    def strategy(self) -> WaitStrategy | None:
        return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        strat = self.strategy()
        if strat is not None:
            strat.with_startup_timeout(max(1, math.ceil(timeout))).with_poll_interval(0.05)
            try:
                strat.wait_until_ready(self)
            except (TimeoutError, RuntimeError) as exc:
                raise ClusterError(f"{self.name} did not get ready: {exc}\nlast log lines:\n{self.log_tail()}") from None
        self._extra_ready(timeout)
        self._read_ports()

    def _extra_ready(self, timeout: float) -> None:
        """A check beyond the wait strategy (Redis answers PING through its published port)."""

    def _read_ports(self) -> None:
        if not self.publish:
            return
        c = self._c
        c.reload()
        found: dict[int, int] = {}
        for key, binds in (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
            if binds:
                port = int(key.split("/")[0])
                for b in binds:
                    if b.get("HostIp") in (LOOPBACK, "") or len(binds) == 1:
                        found[port] = int(b["HostPort"])
                        break
        self._ports = found

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        if self.container is None:
            return
        c = self.container
        try:
            if graceful:
                if self.paused or self.status == "paused":
                    c.unpause()  # a frozen process cannot act on SIGTERM
                c.stop(timeout=max(1, int(round(timeout))))
            else:
                c.kill()  # docker thaws a paused container after SIGKILL: no window where it runs again
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running
                raise ClusterError(f"{self.name}: stop failed: {exc}") from exc
        self.paused = False
        self._wait_exited(10.0)
        self._ports = {}

    def _wait_exited(self, timeout: float) -> None:
        try:
            self._c.wait(timeout=timeout)
        except docker.errors.NotFound:
            return
        except Exception as exc:  # noqa: BLE001 - a read timeout from the daemon
            if self.alive():
                raise ClusterError(f"{self.name} did not exit within {timeout:.0f}s") from exc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.container is None:
            return
        try:
            if sig == signal.SIGKILL:
                self.container.kill()  # the whole container, paused or not
                self.paused = False
                self._wait_exited(10.0)
            else:
                self.container.kill(signal=int(sig))  # to docker-init, which forwards it to the real process
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise ClusterError(f"{self.name}: kill({sig}) failed: {exc}") from exc

    def pause(self) -> None:
        if self.container is not None and self.alive() and not self.paused:
            self.container.pause()
            self.paused = True

    def resume(self) -> None:
        if self.container is not None:
            try:
                self.container.unpause()
            except docker.errors.APIError as exc:
                # resuming what is not paused (it was killed or restarted meanwhile) is a no-op, as SIGCONT is
                if exc.status_code not in (404, 409) and "not paused" not in str(exc):
                    raise
        self.paused = False

    def alive(self) -> bool:
        if self.container is None:
            return False
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return False
        return self.container.status in ("running", "paused", "restarting")

    def _init_process(self) -> psutil.Process | None:
        if self.container is None:
            return None
        try:
            self.container.reload()
            pid = int(self.container.attrs["State"]["Pid"])
            return psutil.Process(pid) if pid > 0 else None
        except (docker.errors.NotFound, psutil.Error, KeyError):
            return None

    def _main_process(self) -> psutil.Process | None:
        """The real main process: docker-init's child (``init=True``), else PID 1 itself."""
        init = self._init_process()
        if init is None:
            return None
        try:
            if "init" in init.name():
                kids = init.children()
                return kids[0] if kids else None
        except psutil.Error:
            return None
        return init

    def pids(self) -> list[int]:
        init = self._init_process()
        if init is None:
            return []
        try:
            return [init.pid, *(p.pid for p in init.children(recursive=True))]
        except psutil.Error:
            return []

    def logs(self) -> str:
        if self.container is None:
            return self._last_logs
        try:
            self._last_logs = self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except docker.errors.NotFound:
            pass
        return self._last_logs

    def logs_since_start(self) -> str:
        out, err = self.get_logs()
        return (out + err).decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def remove(self) -> None:
        """Remove the container (keeping its logs in memory)."""
        if self.container is None:
            return
        self.logs()
        try:
            self.container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("%s: remove failed: %s", self.name, exc)
        if self.tc is not None:
            try:
                self.tc.get_docker_client().client.close()
            except Exception:  # noqa: BLE001
                pass
        self.container = None
        self.paused = False

    def host_port(self, port: int) -> int:
        if port not in self._ports:
            self._read_ports()
        if port not in self._ports:
            raise ClusterError(f"{self.name}: container port {port} is not published (is the node running?)")
        return self._ports[port]

    @property
    def endpoint(self) -> Endpoint | None:
        return None


class DockerRedis(RedisNode, DockerNode):
    """redis-server in a container. Every connection first checks that the host port it dialled is published by
    this node's container, labelled with our run: a FLUSHALL or CONFIG SET never reaches somebody else's Redis."""

    ready_timeout = 30.0
    publish = (REDIS_PORT,)

    def __init__(self, backend: DockerBackend, persistence: Persistence, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        cmd = ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0", "--port", str(REDIS_PORT),
               "--dir", "/data", "--daemonize", "no", "--maxmemory-policy", "noeviction", *persistence.redis_args()]
        DockerNode.__init__(self, backend, "redis", "redis", cmd, volumes={str(data_dir): "/data"})

    def strategy(self) -> WaitStrategy:
        return LogMessageWaitStrategy(re.compile(r"Ready to accept connections"))

    def _extra_ready(self, timeout: float) -> None:
        self._read_ports()

        def pong() -> bool:
            c = self.client(timeout=0.5)
            try:
                return bool(c.ping())
            except redis_lib.RedisError:
                return False
            finally:
                c.close()

        if not wait_until(pong, timeout, error=None):
            raise ClusterError(f"redis logged ready but does not answer PING on {self.endpoint}")

    def _check_ours(self, conn: Any) -> None:
        """Docker holds a published port for the container's life: if ours publishes it, ours answers on it."""
        c = self._c
        try:
            c.reload()
        except docker.errors.NotFound:
            raise ForeignEndpoint(f"{self.name}: our container is gone, so {conn.host}:{conn.port} is not ours: "
                                  "nothing is sent to it") from None
        binds = (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{REDIS_PORT}/tcp") or []
        published = {int(b["HostPort"]) for b in binds if b.get("HostPort")}
        if (c.labels or {}).get(LABEL_RUN) != self.backend.run_id or int(conn.port) not in published:
            raise ForeignEndpoint(f"{conn.host}:{conn.port} is not published by our container {self.container_name} "
                                  "(a stale port somebody else may hold now): nothing is sent to it")

    def client(self, timeout: float = 1.0) -> redis_lib.Redis:
        ep = self.endpoint
        return redis_lib.Redis(host=ep.host, port=ep.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                               retry=Retry(NoBackoff(), 0),  # redis-py >= 6 retries by default: faults must show
                               redis_connect_func=verified_connect(self._check_ours))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.host_port(REDIS_PORT))


class DockerProxy(ProxyNode, DockerNode):
    ready_timeout = 30.0
    publish = (PROXY_API_PORT, *LINK_PORTS.values())

    def __init__(self, backend: DockerBackend) -> None:
        cmd = [PYTHON, "-m", "chaos.proxy", "--listen", f"0.0.0.0:{PROXY_API_PORT}"]
        DockerNode.__init__(self, backend, "proxy", "proxy", cmd)

    def _make(self) -> DockerContainer:
        tc = super()._make()
        tc.with_network_aliases("toxiproxy", "proxy")  # Toxiproxy's usual name too
        return tc

    def strategy(self) -> WaitStrategy:
        return HttpWaitStrategy(PROXY_API_PORT, "/version").for_status_code(200)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.host_port(PROXY_API_PORT))


class DockerApi(DockerNode):
    publish = (API_PORT,)

    def __init__(self, backend: DockerBackend, command: list[str], env: dict[str, str],
                 probe_path: str | None) -> None:
        super().__init__(backend, "api", "api", command, env, volumes={str(backend.shared_dir()): SHARED_DATA})
        self.probe_path = probe_path

    def strategy(self) -> WaitStrategy:
        if self.probe_path is None:  # no health nor ready path declared: up once it accepts connections
            return PortWaitStrategy(API_PORT)
        return HttpWaitStrategy(API_PORT, self.probe_path).for_status_code(200)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.host_port(API_PORT))


class DockerWorker(WorkerNode, DockerNode):
    """A Celery worker container; ready when it logs the target's ready line after this start."""

    def __init__(self, backend: DockerBackend, name: str, command: list[str], env: dict[str, str],
                 ready_log: str) -> None:
        DockerNode.__init__(self, backend, name, "worker", command, env,
                            volumes={str(backend.shared_dir()): SHARED_DATA})
        self.ready_re = re.compile(ready_log, re.MULTILINE)

    def strategy(self) -> WaitStrategy:
        return LogMessageWaitStrategy(self.ready_re)

    def child_pids(self) -> list[int]:
        main = self._main_process()
        if main is None:
            return []
        try:
            return [p.pid for p in main.children()]
        except psutil.Error:
            return []


class DockerBackend(Backend):
    """Containers of the target image on a per-cluster network; ``{python}`` is the image's venv python."""

    name = "docker"

    def __init__(self, target: Target, workdir: Path, run_id: str) -> None:
        super().__init__(target, workdir, run_id)
        self._image: str | None = os.environ.get(IMAGE_ENV) or None
        self._network: Network | None = None
        self.nodes: list[DockerNode] = []
        self._lock = threading.Lock()

    # shared resources, made on first use -------------------------------------------------------------------
    @property
    def image(self) -> str:
        with self._lock:
            if self._image is None:
                from chaos.images import build_images, find_target_image

                tag = find_target_image(self.target)
                if tag is None:
                    log.warning("building the docker images of target %r (first use; later runs reuse them)",
                                self.target.name)
                    tag = build_images(self.target, progress=log.info)["target"]
                self._image = tag
            return self._image

    @property
    def network(self) -> Network:
        with self._lock:
            if self._network is None:
                net = Network(docker_client_kw={"timeout": 60}, docker_network_kw={"labels": labels(self.run_id)})
                net.name = self.run_id
                self._network = net.create()
            return self._network

    def shared_dir(self) -> Path:
        d = self.workdir / "data"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def data_dir(self) -> str:
        self.shared_dir()
        return SHARED_DATA

    def _track(self, node: DockerNode) -> DockerNode:
        _ = self.image  # build/find the image before the first container, not inside a thread pool
        self.nodes.append(node)
        return node

    # nodes -------------------------------------------------------------------------------------------------
    def make_redis(self, persistence: Persistence) -> DockerRedis:
        return self._track(DockerRedis(self, persistence, self.workdir / "redis"))  # type: ignore[return-value]

    def make_proxy(self) -> DockerProxy:
        return self._track(DockerProxy(self))  # type: ignore[return-value]

    def link_spec(self, link: str, redis: RedisNode, api: Node | None) -> tuple[str, str]:
        port = LINK_PORTS.get(link, 0)
        if link == "client_api":
            return f"0.0.0.0:{port}", f"api:{API_PORT}"
        return f"0.0.0.0:{port}", f"redis:{REDIS_PORT}"

    def link_address(self, proxy: ProxyNode, listen: str, *, from_host: bool) -> tuple[str, int]:
        port = int(listen.rpartition(":")[2])
        if not from_host:
            return "toxiproxy", port
        assert isinstance(proxy, DockerProxy)
        return LOOPBACK, proxy.host_port(port)

    def _render(self, values: dict[str, object], **extra: object) -> tuple[dict[str, str], dict[str, object]]:
        v = {"python": PYTHON, "concurrency": self.target.worker_concurrency, **values, **extra}
        return self.target.render_env(**v), v

    def make_api(self, values: dict[str, object]) -> DockerApi:
        env, v = self._render(values, host="0.0.0.0", port=API_PORT, name="api")
        assert self.target.api_command is not None
        argv = shlex.split(self.target.render(self.target.api_command, **v))
        return self._track(DockerApi(self, argv, env, self.target.http.probe_path if self.target.http else None))  # type: ignore[return-value]

    probe_mount = "/celery-chaos-probe"  # <workdir>/probe in worker containers (chaos.probe: hook/, records/)

    def make_worker(self, name: str, values: dict[str, object]) -> DockerWorker:
        env, v = self._render(values, host="0.0.0.0", port=0, name=name)
        argv = shlex.split(self.target.render(self.target.worker_command, **v))
        probe_env = self._probe_env(name, env)
        worker = DockerWorker(self, name, argv, {**env, **probe_env}, self.target.worker_ready_log)
        if probe_env:  # the container is made at its first start: the mount is in place by then
            worker.volumes[str(probe.probe_root(self.workdir))] = self.probe_mount
        return self._track(worker)  # type: ignore[return-value]

    def _probe_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """The worker probe (chaos.probe): ``<workdir>/probe`` is mounted at ``probe_mount``, its hook first on the
        container's PYTHONPATH (the target's, else the image's, kept after it). The command is untouched."""
        if not probe.enabled():
            return {}
        probe.prepare(self.workdir)
        return probe.worker_env(name, f"{self.probe_mount}/hook", f"{self.probe_mount}/records",
                                env.get("PYTHONPATH", self._image_pythonpath()))

    def _image_pythonpath(self) -> str | None:
        """PYTHONPATH as the image sets it (a container's env replaces the image's value, so it is carried over)."""
        cached: str | None = getattr(self, "_image_pp", None)
        if cached is None:
            found = ""
            try:
                client = docker.from_env(timeout=30)
                try:
                    for item in client.images.get(self.image).attrs.get("Config", {}).get("Env") or []:
                        if item.startswith("PYTHONPATH="):
                            found = item.partition("=")[2]
                finally:
                    client.close()
            except Exception as exc:  # noqa: BLE001 - unknown: the probe goes first, alone
                log.debug("could not read the image's PYTHONPATH: %s", exc)
            self._image_pp = cached = found
        return cached or None

    def close(self) -> None:
        errors = []
        for n in reversed(self.nodes):
            try:
                n.remove()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(f"{n.name}: {exc}")
        if self._network is not None:
            try:
                self._network.remove()
            except docker.errors.NotFound:
                pass
            except Exception as exc:  # noqa: BLE001
                errors.append(f"network {self.run_id}: {exc}")
            try:
                self._network._docker.client.close()
            except Exception:  # noqa: BLE001
                pass
            self._network = None
        if errors:
            raise ClusterError("docker backend cleanup: " + "; ".join(errors))
