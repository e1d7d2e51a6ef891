"""The ``local`` backend: every node is a subprocess on 127.0.0.1, in its own process group, no Docker needed.

A process group per node is what lets a SIGKILL or a SIGSTOP reach a Celery worker's pool children too, the way
``docker kill``/``docker pause`` reach a whole container. psutil finds the children for pool-child faults.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos import probe, waiting
from chaos.cluster.base import (
    Backend,
    Endpoint,
    Node,
    Persistence,
    ProxyNode,
    RedisNode,
    Role,
    WorkerNode,
    api_answers,
)
from chaos.cluster.cleanup import mark, register, unregister, wait_dead
from chaos.cluster.ownership import ForeignEndpoint, accepts, listens_on, redis_process_id, verified_connect
from chaos.cluster.ports import free_port
from chaos.errors import ClusterError, PrerequisiteMissing

REDIS_HINT = (
    "redis-server was not found on PATH; install it (Debian/Ubuntu: `apt-get install -y redis-server`, "
    "macOS: `brew install redis`) or use --chaos-backend=docker"
)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05, node: LocalNode | None = None) -> None:
    """Poll ``predicate`` until true; a node that died meanwhile fails fast with its log tail, and a stranger
    answering in its place (``ForeignEndpoint``) fails at once."""

    def ready() -> bool:
        try:
            ok = bool(predicate())
        except ForeignEndpoint:
            raise
        except Exception:  # noqa: BLE001 - not ready yet
            ok = False
        if not ok and node is not None and not node.alive():
            raise ClusterError(f"{node.name} exited while waiting for {what}; last log lines:\n{node.log_tail()}")
        return ok

    if not waiting.wait_until(ready, timeout, interval, what=what, error=None):
        tail = f"; last log lines:\n{node.log_tail()}" if node is not None else ""
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


class LocalNode(Node):
    """A subprocess with its own process group and a log file that survives restarts."""

    ready_timeout = 60.0

    def __init__(self, name: str, role: Role, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path,
                 run_id: str) -> None:
        super().__init__(name, role)
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.run_id = run_id
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._registered: Path | None = None

    # lifecycle -------------------------------------------------------------------------------------------
    def spawn(self) -> None:
        if self.alive():
            raise ClusterError(f"{self.name} is already running (pid {self.proc.pid if self.proc else '?'})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, **self.env, **mark(self.run_id), "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        try:
            log.write(f"\n=== {self.name} start {time.strftime('%H:%M:%S')}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(  # noqa: S603 - argv comes from the user's target description
                self.argv, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise PrerequisiteMissing(f"{self.name}: cannot run {self.argv[0]!r}: {exc.strerror}") from None
        finally:
            log.close()
        unregister(self._registered)
        self._registered = register(self.run_id, self.name, self.proc.pid)
        self.paused = False

    def start(self) -> None:
        self.spawn()
        self.wait_ready(self.ready_timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(self.ready, timeout, f"{self.name} to be ready", node=self)

    def ready(self) -> bool:
        return self.alive()

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        if graceful and self.alive():
            self._signal_main(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()
        self.paused = False

    def _kill_group(self) -> None:
        assert self.proc is not None
        members = self._group_members()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired as exc:  # pragma: no cover - kernel trouble
            raise ClusterError(f"{self.name} (pid {self.proc.pid}) did not die after SIGKILL") from exc
        wait_dead(members, timeout=5)
        unregister(self._registered)
        self._registered = None

    def _group_members(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            main = psutil.Process(self.proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return []

    def _signal_main(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if sig == signal.SIGKILL:
            self._kill_group()
            self.paused = False
        else:
            self._signal_main(sig)

    def pause(self) -> None:
        if self.proc is not None and self.alive():
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.paused = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [p.pid for p in self._group_members()]

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    @property
    def endpoint(self) -> Endpoint | None:
        return None


class OwnPortNode(LocalNode):
    """A node listening on a port we picked free, ready only once what answers there is provably ours.

    The port is free when we pick it, not when our server binds it: on a shared machine another process can take
    it in between, and the readiness probe would then reach a stranger. ``ready`` raises ``ForeignEndpoint`` for
    one. On the first start nothing points at the port yet, so the node moves once to another free port (a lost
    race is no reason to fail a run) and raises if that one is taken too. Once started, the port is wired into
    other nodes (the proxy's links, the workers' URLs), so a port taken while the node was down is an error.
    """

    port: int
    _wired = False  # a start succeeded: other nodes point at self.port now

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        try:
            super().start()
        except ForeignEndpoint:
            if self._wired:
                raise
            self._kill_group()  # our process lost the bind race: it goes, the stranger is left alone
            self.port = free_port()
            self.argv = self.command(self.port)
            super().start()
        self._wired = True


class LocalRedis(RedisNode, OwnPortNode):
    """redis-server on a fixed free port; the port and the data dir survive restarts, as a real broker's do.

    Every connection, readiness pings and faults alike, first checks that the server's ``process_id`` (``INFO
    server``) is our redis-server's pid: a FLUSHALL or CONFIG SET never reaches somebody else's Redis.
    """

    ready_timeout = 20.0

    def __init__(self, persistence: Persistence, data_dir: Path, log_dir: Path, run_id: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise PrerequisiteMissing(REDIS_HINT)
        self.exe = exe
        self.port = free_port()
        self.persistence = persistence
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        LocalNode.__init__(self, "redis", "redis", self.command(self.port), {}, data_dir, log_dir, run_id)

    def command(self, port: int) -> list[str]:
        return [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--protected-mode", "no", "--daemonize", "no", "--maxmemory-policy", "noeviction",
                "--set-proc-title", "no",  # a retitled redis-server overwrites its environment (our mark)
                *self.persistence.redis_args()]

    def ready(self) -> bool:
        c = self.client(timeout=0.5)
        try:
            return bool(c.ping())
        finally:
            c.close()

    def _check_ours(self, conn: object) -> None:
        theirs = redis_process_id(conn)
        ours = self.proc.pid if self.proc is not None and self.alive() else None
        if theirs is None or theirs != ours:
            raise ForeignEndpoint(f"the Redis answering on 127.0.0.1:{self.port} is another process's (pid {theirs}), "
                                  f"not our redis-server (pid {ours}): nothing is sent to it")

    def client(self, timeout: float = 1.0) -> redis_lib.Redis:
        return redis_lib.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                               socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
                               redis_connect_func=verified_connect(self._check_ours))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)


class LocalProxy(ProxyNode, OwnPortNode):
    """The Toxiproxy-compatible fault proxy as a subprocess (``python -m chaos.proxy``); ready once its API answers
    on a socket that our process (or one of its children) listens on."""

    ready_timeout = 20.0

    def __init__(self, log_dir: Path, run_id: str, cwd: Path) -> None:
        self.port = free_port()
        LocalNode.__init__(self, "proxy", "proxy", self.command(self.port), {}, cwd, log_dir, run_id)

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "chaos.proxy", "--listen", f"127.0.0.1:{port}"]

    def ready(self) -> bool:
        if not listens_on(self.pids(), self.port):
            # a connection accepted while we still do not listen there is somebody else's socket
            if accepts("127.0.0.1", self.port) and not listens_on(self.pids(), self.port):
                raise ForeignEndpoint(f"127.0.0.1:{self.port} is listened on by another process, not our fault "
                                      "proxy: nothing is sent to it")
            return False
        return httpx.get(f"{self.api_url}/version", timeout=0.5).status_code == 200

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)


class LocalApi(LocalNode):
    """The target's HTTP API; ready when its health (or ready) path answers 200, else when it accepts a
    connection (a target that declares neither is up once it listens)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path, run_id: str, port: int,
                 probe_path: str | None) -> None:
        super().__init__("api", "api", argv, env, cwd, log_dir, run_id)
        self.port = port
        self.probe_path = probe_path

    def ready(self) -> bool:
        return api_answers(f"http://127.0.0.1:{self.port}", self.probe_path)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)


class LocalWorker(WorkerNode, LocalNode):
    """A Celery worker; ready when it logs its ready line (``celery@host ready.``) after this start."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path, run_id: str,
                 ready_log: str) -> None:
        LocalNode.__init__(self, name, "worker", argv, env, cwd, log_dir, run_id)
        self.ready_re = re.compile(ready_log)

    def ready(self) -> bool:
        return bool(self.ready_re.search(self.logs_since_start()))

    def child_pids(self) -> list[int]:
        return self.pids()[1:]


class LocalBackend(Backend):
    """Local processes on 127.0.0.1 free ports; ``{python}`` is this interpreter."""

    name = "local"

    def data_dir(self) -> str:
        d = self.workdir / "data"
        d.mkdir(parents=True, exist_ok=True)
        return str(d)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def make_redis(self, persistence: Persistence) -> LocalRedis:
        return LocalRedis(persistence, self.workdir / "redis", self.log_dir, self.run_id)

    def make_proxy(self) -> LocalProxy:
        return LocalProxy(self.log_dir, self.run_id, self.target.root)

    def link_spec(self, link: str, redis: RedisNode, api: Node | None) -> tuple[str, str]:
        if link == "client_api":
            assert api is not None and api.endpoint is not None
            return "127.0.0.1:0", f"127.0.0.1:{api.endpoint.port}"
        return "127.0.0.1:0", f"127.0.0.1:{redis.endpoint.port}"  # type: ignore[union-attr]

    def link_address(self, proxy: ProxyNode, listen: str, *, from_host: bool) -> tuple[str, int]:
        host, _, port = listen.rpartition(":")
        return host, int(port)

    def _render(self, values: dict[str, object], **extra: object) -> tuple[dict[str, str], dict[str, object]]:
        v = {"python": self.target.interpreter, "concurrency": self.target.worker_concurrency, **values, **extra}
        return self.target.render_env(**v), v

    def make_api(self, values: dict[str, object]) -> LocalApi:
        port = free_port()
        env, v = self._render(values, host="127.0.0.1", port=port, name="api")
        assert self.target.api_command is not None
        argv = shlex.split(self.target.render(self.target.api_command, **v))
        http = self.target.http
        return LocalApi(argv, env, self.target.workdir, self.log_dir, self.run_id, port,
                        http.probe_path if http else None)

    def make_worker(self, name: str, values: dict[str, object]) -> LocalWorker:
        env, v = self._render(values, host="127.0.0.1", port=0, name=name)
        argv = shlex.split(self.target.render(self.target.worker_command, **v))
        env.update(self._probe_env(name, env))
        return LocalWorker(name, argv, env, self.target.workdir, self.log_dir, self.run_id, self.target.worker_ready_log)

    def _probe_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """The worker probe (chaos.probe): its hook first on PYTHONPATH (the target's, else ours, kept after it),
        records into ``<workdir>/probe/records``. The command is untouched."""
        if not probe.enabled():
            return {}
        hook, records = probe.prepare(self.workdir)
        return probe.worker_env(name, str(hook), str(records), env.get("PYTHONPATH", os.environ.get("PYTHONPATH")))
