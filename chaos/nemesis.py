"""The nemesis: a catalogue of faults over a cluster, each recorded as a window.

A fault's ``inject`` returns its own ``Heal`` (a callable that knows what that injection changed), so nothing
outside the fault has to carry or interpret its state. A fault is plain data (``FaultSpec``: which fault, on what, when, for how long) so that Hypothesis can draw and
shrink schedules of them; the ``Nemesis`` turns specs into actions on nodes and proxy links. Whatever happens,
``heal_all`` undoes every fault still open: the final heal of every scenario.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from chaos.errors import BadArguments

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster
    from chaos.history import Recorder


@dataclass(frozen=True)
class FaultSpec:
    """One fault of a schedule: ``kind`` on ``node`` from ``at`` seconds after the start, for ``duration``."""

    kind: str
    node: str = ""  # a node name (worker-0, redis, api) or a link (workers_redis, api_redis, client_api)
    at: float = 0.0
    duration: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultSpec:
        return cls(kind=d["kind"], node=d.get("node", ""), at=float(d.get("at", 0.0)),
                   duration=float(d.get("duration", 1.0)), params=dict(d.get("params", {})))

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({self.node}{',' + extra if extra else ''})@{self.at:.1f}s+{self.duration:.1f}s"


#: What undoes one injected fault: made by the fault's ``inject``, which alone knows what it changed.
Heal = Callable[[], None]


def _nothing() -> None:
    """The heal of a fault that undoes itself (a restart, a FLUSHALL: nothing is left to undo)."""


@dataclass(frozen=True)
class FaultKind:
    """A kind of fault: what it targets, and an ``inject`` that hurts the cluster and returns its own heal."""

    name: str
    family: str  # worker | broker | network | api
    targets: str  # "worker" | "redis" | "api" | "link"
    inject: Callable[[Cluster, FaultSpec], Heal]
    doc: str


# --- helpers -------------------------------------------------------------------------------------------------
def _worker(c: Cluster, spec: FaultSpec):  # noqa: ANN202
    if spec.node in ("", "any"):
        live = [w for w in c.workers if w.alive()]
        if not live:
            raise BadArguments("no live worker to hurt")
        return live[0]
    return c.node(spec.node)


def _restart_if_dead(node: Any) -> None:
    """Start a node a fault stopped. A worker is only spawned: it gets ready when its broker answers, which may
    be after another fault heals (waiting here would deadlock a schedule where Redis is down meanwhile)."""
    if node.paused:
        node.resume()
    if not node.alive():
        if node.role == "worker":
            node.spawn()
        else:
            node.start()


def _start_again(node: Any, grace: float, *, paused_shuts_down: bool) -> Heal:
    """The heal of a signalled node: a shutdown in progress gets ``grace`` seconds to finish (then the node is
    killed), and the node is started again. A paused worker is not shutting down: it is only resumed (a paused
    API is waited for and killed, as it always was)."""

    def heal() -> None:
        if node.alive() and (paused_shuts_down or not node.paused) and not node.wait_exit(grace):
            node.stop(graceful=False)
        _restart_if_dead(node)

    return heal


def _busy_child_pid(c: Cluster, worker: Any) -> int | None:
    """The pool child running the newest unfinished execution: from the target's ledger when it has one, else
    from the worker probe's records (their pids are the container's own on docker: matched through NSpid)."""
    from chaos.probe import namespace_pid, read_cluster
    from chaos.probes import fetch_ledger

    try:
        ledger = fetch_ledger(c)
    except Exception:  # noqa: BLE001 - the ledger probe failed: try the worker probe
        ledger = None
    try:
        source = ledger or read_cluster(c)
    except OSError:
        source = None
    if not source:
        return None  # nothing says which child is busy: any child will do
    host_pid = {namespace_pid(pid) or pid: pid for pid in worker.child_pids()}
    if ledger:
        host_pid = {pid: pid for pid in worker.child_pids()}
    running = [e for t in source.get("tasks", []) for e in t.get("executions", [])
               if e.get("finished_at") is None and e.get("pid") in host_pid]
    running.sort(key=lambda e: e.get("started_at", 0), reverse=True)
    return host_pid[running[0]["pid"]] if running else None


# --- worker faults --------------------------------------------------------------------------------------------
def _signal_worker(sig: int) -> Callable[[Cluster, FaultSpec], Heal]:
    """Signal the worker (SIGKILL, a warm or a cold shutdown); the heal lets a shutdown finish, then starts it."""

    def inject(c: Cluster, spec: FaultSpec) -> Heal:
        w = _worker(c, spec)
        w.kill(sig)
        return _start_again(w, grace=15.0, paused_shuts_down=False)

    return inject


def _kill_child(c: Cluster, spec: FaultSpec) -> Heal:
    w = _worker(c, spec)
    w.kill_child(signal.SIGKILL, pid=_busy_child_pid(c, w))
    return _nothing  # the worker's pool replaces the child


def _pause(node_of: Callable[[Cluster, FaultSpec], Any]) -> Callable[[Cluster, FaultSpec], Heal]:
    def inject(c: Cluster, spec: FaultSpec) -> Heal:
        n = node_of(c, spec)
        n.pause()
        return n.resume

    return inject


def _stop_timeout(c: Cluster, spec: FaultSpec) -> float:
    """How long a graceful stop of the target's process waits before SIGKILL: the fault's ``timeout``, else the
    target's declared ``timing.stop_timeout_s`` (a warm shutdown waits for the running tasks)."""
    return float(spec.params.get("timeout", c.target.timing.stop_timeout_s))


def _restart_worker(c: Cluster, spec: FaultSpec) -> Heal:
    w = _worker(c, spec)
    w.restart(graceful=spec.params.get("graceful", True), timeout=_stop_timeout(c, spec))
    return _nothing


def _scale_down(c: Cluster, spec: FaultSpec) -> Heal:
    before = len(c.workers)
    n = max(0, before - int(spec.params.get("by", 1)))
    while len(c.workers) > n:
        c.remove_worker(graceful=spec.params.get("graceful", True), timeout=_stop_timeout(c, spec))
    return lambda: c.scale(before)


# --- broker faults --------------------------------------------------------------------------------------------
def _stop_redis(c: Cluster, spec: FaultSpec) -> Heal:
    assert c.redis is not None
    c.redis.stop(graceful=spec.params.get("graceful", True))
    return partial(_restart_if_dead, c.redis)


def _kill_redis(c: Cluster, spec: FaultSpec) -> Heal:
    assert c.redis is not None
    c.redis.kill(signal.SIGKILL)
    return partial(_restart_if_dead, c.redis)


def _restart_redis(c: Cluster, spec: FaultSpec) -> Heal:
    assert c.redis is not None
    c.redis.restart(graceful=spec.params.get("graceful", True))
    return _nothing


def _redis_command(*args: Any) -> Callable[[Cluster, FaultSpec], Heal]:
    """One command to Redis (FLUSHALL; CLIENT KILL of every normal connection but ours, as Celery's own smoke
    tests do): what it did is done, nothing is left to heal."""

    def inject(c: Cluster, spec: FaultSpec) -> Heal:
        assert c.redis is not None
        r = c.redis.client()
        try:
            r.execute_command(*args)
        finally:
            r.close()
        return _nothing

    return inject


def _memory_pressure(c: Cluster, spec: FaultSpec) -> Heal:
    """Cap maxmemory just above what is used (noeviction): every write fails with OOM until healed."""
    assert c.redis is not None
    r = c.redis.client()
    try:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + int(spec.params.get("headroom", 16 * 1024)))
        r.config_set("maxmemory-policy", "noeviction")
    finally:
        r.close()

    def heal() -> None:
        assert c.redis is not None
        if not c.redis.alive():
            return
        r = c.redis.client()
        try:
            r.config_set("maxmemory", 0)
        finally:
            r.close()

    return heal


# --- network faults (through the proxy) -----------------------------------------------------------------------
def _link(spec: FaultSpec) -> str:
    from chaos.cluster.cluster import LINKS

    if spec.node not in LINKS:
        raise BadArguments(f"network faults need a link ({', '.join(LINKS)}), not {spec.node!r}")
    return spec.node


def _toxic(kind: str, **defaults: Any) -> Callable[[Cluster, FaultSpec], Heal]:
    def inject(c: Cluster, spec: FaultSpec) -> Heal:
        assert c.proxy is not None
        link = _link(spec)
        attrs = {**defaults, **{k: v for k, v in spec.params.items() if k != "stream"}}
        names = []
        streams = [spec.params["stream"]] if "stream" in spec.params else ["upstream", "downstream"]
        for stream in streams:
            name = f"chaos_{kind}_{stream}"
            c.proxy.add_toxic(link, kind, stream=stream, name=name, **attrs)
            names.append(name)

        def heal() -> None:
            assert c.proxy is not None
            for name in names:
                try:
                    c.proxy.remove_toxic(link, name)
                except Exception:  # noqa: BLE001 - already gone (reset)
                    pass

        return heal

    return inject


def _disable_link(c: Cluster, spec: FaultSpec) -> Heal:
    assert c.proxy is not None
    link = _link(spec)
    c.proxy.disable(link)

    def heal() -> None:
        assert c.proxy is not None
        c.proxy.enable(link)

    return heal


# --- api faults -------------------------------------------------------------------------------------------------
def _signal_api(sig: int) -> Callable[[Cluster, FaultSpec], Heal]:
    def inject(c: Cluster, spec: FaultSpec) -> Heal:
        assert c.api is not None
        c.api.kill(sig)
        return _start_again(c.api, grace=10.0, paused_shuts_down=True)

    return inject


def _restart_api(c: Cluster, spec: FaultSpec) -> Heal:
    assert c.api is not None
    c.api.restart(graceful=spec.params.get("graceful", True), timeout=_stop_timeout(c, spec))
    return _nothing


FAULTS: dict[str, FaultKind] = {f.name: f for f in [
    FaultKind("kill-worker", "worker", "worker", _signal_worker(signal.SIGKILL),
              "SIGKILL the worker's main process and its pool children"),
    FaultKind("kill-child", "worker", "worker", _kill_child,
              "SIGKILL one pool child (the one running a task when the ledger says which)"),
    FaultKind("term-worker", "worker", "worker", _signal_worker(signal.SIGTERM),
              "SIGTERM: warm shutdown, then start it again"),
    FaultKind("quit-worker", "worker", "worker", _signal_worker(signal.SIGQUIT),
              "SIGQUIT: cold shutdown, then start it again"),
    FaultKind("pause-worker", "worker", "worker", _pause(_worker), "SIGSTOP the worker, then SIGCONT"),
    FaultKind("restart-worker", "worker", "worker", _restart_worker, "graceful stop and start"),
    FaultKind("scale-down", "worker", "worker", _scale_down, "remove a worker, add it back at heal"),
    FaultKind("stop-redis", "broker", "redis", _stop_redis,
              "stop Redis (SHUTDOWN saves with persistence), start it at heal"),
    FaultKind("kill-redis", "broker", "redis", _kill_redis, "SIGKILL Redis, start it at heal"),
    FaultKind("restart-redis", "broker", "redis", _restart_redis, "stop and start Redis at once"),
    FaultKind("pause-redis", "broker", "redis", _pause(lambda c, s: c.node("redis")),
              "SIGSTOP Redis: connections hang, nothing is refused"),
    FaultKind("flushall", "broker", "redis", _redis_command("FLUSHALL"),
              "FLUSHALL: every queued message and binding is gone"),
    FaultKind("client-kill", "broker", "redis", _redis_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"),
              "CLIENT KILL TYPE normal: every client reconnects"),
    FaultKind("memory-pressure", "broker", "redis", _memory_pressure,
              "maxmemory just above use, noeviction: writes fail with OOM"),
    FaultKind("latency", "network", "link", _toxic("latency", latency=200, jitter=50),
              "add latency (ms) with jitter to a link"),
    FaultKind("cut", "network", "link", _toxic("timeout", timeout=0),
              "blackhole a link: bytes are held, nothing is refused"),
    FaultKind("down", "network", "link", _disable_link, "close the link and refuse new connections"),
    FaultKind("reset-peer", "network", "link", _toxic("reset_peer", timeout=0),
              "reset every connection on the link"),
    FaultKind("slicer", "network", "link", _toxic("slicer", average_size=8, size_variation=4, delay=1000),
              "slice the stream into small delayed pieces"),
    FaultKind("bandwidth", "network", "link", _toxic("bandwidth", rate=4), "limit a link's bandwidth (KB/s)"),
    FaultKind("kill-api", "api", "api", _signal_api(signal.SIGKILL), "SIGKILL the API, start it at heal"),
    FaultKind("term-api", "api", "api", _signal_api(signal.SIGTERM), "SIGTERM the API, start it at heal"),
    FaultKind("restart-api", "api", "api", _restart_api, "graceful restart of the API"),
]}


def fault_kind(name: str) -> FaultKind:
    try:
        return FAULTS[name]
    except KeyError:
        raise BadArguments(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}") from None


class Nemesis:
    """Injects and heals faults on one cluster, recording each as a window in the history."""

    def __init__(self, cluster: Cluster, recorder: Recorder) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self._open: dict[str, tuple[FaultSpec, Heal, Any]] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def busy(self, node: str) -> bool:
        """A fault is open on ``node`` (callers that inject directly use this to let faults take turns)."""
        with self._lock:
            return any(spec.node == node for spec, _heal, _start in self._open.values())

    def inject(self, spec: FaultSpec) -> str:
        """Inject ``spec``; returns the fault id to heal it with."""
        kind = fault_kind(spec.kind)
        start = self.recorder.fault_start(spec.kind, spec.node, spec.params)
        try:
            heal = kind.inject(self.cluster, spec)
        except Exception as exc:
            self.recorder.fault_end(start, error=f"inject failed: {exc}")
            raise
        with self._lock:
            self._open[start.fault_id] = (spec, heal, start)
        return start.fault_id

    def heal(self, fid: str) -> None:
        with self._lock:
            _spec, heal, start = self._open.pop(fid)
        error = None
        try:
            heal()
        except Exception as exc:  # noqa: BLE001 - recorded, and heal_all will still run
            error = f"heal failed: {exc}"
            raise
        finally:
            self.recorder.fault_end(start, error=error)

    def run(self, spec: FaultSpec) -> None:
        """Inject, hold for ``duration``, heal.

        Faults on the same node take turns (a restart must not be killed halfway by an overlapping kill): a
        fault whose node is busy starts when the earlier one has healed, and its window says so.
        """
        with self._lock:
            node_lock = self._node_locks[spec.node or spec.kind]
        with node_lock:
            fid = self.inject(spec)
            try:
                time.sleep(max(0.0, spec.duration))
            finally:
                self.heal(fid)

    def run_schedule(self, schedule: list[FaultSpec], t0: float, stop: threading.Event) -> list[str]:
        """Run a schedule (specs may overlap) relative to ``t0``; returns errors instead of raising."""
        errors: list[str] = []
        threads = []

        def one(spec: FaultSpec) -> None:
            delay = t0 + spec.at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            try:
                self.run(spec)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{spec}: {exc}")

        for spec in schedule:
            th = threading.Thread(target=one, args=(spec,), name=f"nemesis-{spec.kind}", daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        return errors

    def heal_all(self) -> list[str]:
        """Heal every open fault, resume paused nodes and clear every toxic. Never raises: returns what went wrong.

        Nodes that died on their own (a worker that exits when Redis restarts) are not restarted here: that
        is the target's behaviour under test, and its consequence (stuck tasks) is for the checkers to see.
        """
        errors = []
        for fid in list(self._open):
            try:
                self.heal(fid)
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc))
        try:
            for node in self.cluster.nodes():
                if node.paused:
                    node.resume()
            if self.cluster.proxy is not None:
                self.cluster.proxy.reset()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"final heal: {exc}")
        return errors
