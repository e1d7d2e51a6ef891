"""The nemesis: a catalogue of faults over a cluster, each with an inject and a heal, each recorded as a window.

A fault is plain data (``FaultSpec``: which fault, on what, when, for how long) so that Hypothesis can draw and
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


@dataclass(frozen=True)
class FaultKind:
    """A kind of fault: what it targets and how to inject and heal it."""

    name: str
    family: str  # worker | broker | network | api
    targets: str  # "worker" | "redis" | "api" | "link"
    inject: Callable[[Cluster, FaultSpec], Any]
    heal: Callable[[Cluster, FaultSpec, Any], None]
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


def _noop(c: Cluster, spec: FaultSpec, state: Any) -> None:
    return None


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
def _kill_worker(c: Cluster, spec: FaultSpec) -> Any:
    w = _worker(c, spec)
    w.kill(signal.SIGKILL)
    return w


def _kill_child(c: Cluster, spec: FaultSpec) -> Any:
    w = _worker(c, spec)
    pid = w.kill_child(signal.SIGKILL, pid=_busy_child_pid(c, w))
    return {"worker": w.name, "pid": pid}


def _signal_worker(sig: int) -> Callable[[Cluster, FaultSpec], Any]:
    def inject(c: Cluster, spec: FaultSpec) -> Any:
        w = _worker(c, spec)
        w.kill(sig)
        return w

    return inject


def _heal_worker(c: Cluster, spec: FaultSpec, w: Any) -> None:
    if w is None:
        return
    if w.alive() and not w.paused:
        # a warm/cold shutdown in progress: give it its time, then make sure it is gone before restarting
        if not w.wait_exit(15.0):
            w.stop(graceful=False)
    _restart_if_dead(w)


def _pause_node(c: Cluster, spec: FaultSpec) -> Any:
    n = _worker(c, spec) if spec.node.startswith("worker") or spec.node in ("", "any") else c.node(spec.node)
    n.pause()
    return n


def _resume_node(c: Cluster, spec: FaultSpec, n: Any) -> None:
    if n is not None:
        n.resume()


def _restart_worker(c: Cluster, spec: FaultSpec) -> Any:
    w = _worker(c, spec)
    w.restart(graceful=spec.params.get("graceful", True), timeout=float(spec.params.get("timeout", 10.0)))
    return w


def _scale_down(c: Cluster, spec: FaultSpec) -> Any:
    n = max(0, len(c.workers) - int(spec.params.get("by", 1)))
    before = len(c.workers)
    while len(c.workers) > n:
        c.remove_worker(graceful=spec.params.get("graceful", True))
    return before


def _scale_back(c: Cluster, spec: FaultSpec, before: Any) -> None:
    c.scale(int(before))


# --- broker faults --------------------------------------------------------------------------------------------
def _stop_redis(c: Cluster, spec: FaultSpec) -> Any:
    assert c.redis is not None
    c.redis.stop(graceful=spec.params.get("graceful", True))
    return c.redis


def _kill_redis(c: Cluster, spec: FaultSpec) -> Any:
    assert c.redis is not None
    c.redis.kill(signal.SIGKILL)
    return c.redis


def _restart_redis(c: Cluster, spec: FaultSpec) -> Any:
    assert c.redis is not None
    c.redis.restart(graceful=spec.params.get("graceful", True))
    return c.redis


def _redis_command(*args: Any) -> Callable[[Cluster, FaultSpec], Any]:
    def inject(c: Cluster, spec: FaultSpec) -> Any:
        assert c.redis is not None
        r = c.redis.client()
        try:
            return r.execute_command(*args)
        finally:
            r.close()

    return inject


def _client_kill(c: Cluster, spec: FaultSpec) -> Any:
    """CLIENT KILL of every normal connection except ours, as Celery's own smoke tests do."""
    assert c.redis is not None
    r = c.redis.client()
    try:
        return r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    finally:
        r.close()


def _memory_pressure(c: Cluster, spec: FaultSpec) -> Any:
    """Cap maxmemory just above what is used (noeviction): every write fails with OOM until healed."""
    assert c.redis is not None
    r = c.redis.client()
    try:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + int(spec.params.get("headroom", 16 * 1024)))
        r.config_set("maxmemory-policy", "noeviction")
    finally:
        r.close()
    return None


def _heal_memory(c: Cluster, spec: FaultSpec, state: Any) -> None:
    assert c.redis is not None
    if not c.redis.alive():
        return
    r = c.redis.client()
    try:
        r.config_set("maxmemory", 0)
    finally:
        r.close()


# --- network faults (through the proxy) -----------------------------------------------------------------------
def _link(spec: FaultSpec) -> str:
    from chaos.cluster.cluster import LINKS

    if spec.node not in LINKS:
        raise BadArguments(f"network faults need a link ({', '.join(LINKS)}), not {spec.node!r}")
    return spec.node


def _toxic(kind: str, **defaults: Any) -> Callable[[Cluster, FaultSpec], Any]:
    def inject(c: Cluster, spec: FaultSpec) -> Any:
        assert c.proxy is not None
        link = _link(spec)
        attrs = {**defaults, **{k: v for k, v in spec.params.items() if k != "stream"}}
        names = []
        streams = [spec.params["stream"]] if "stream" in spec.params else ["upstream", "downstream"]
        for stream in streams:
            name = f"chaos_{kind}_{stream}"
            c.proxy.add_toxic(link, kind, stream=stream, name=name, **attrs)
            names.append(name)
        return names

    return inject


def _remove_toxics(c: Cluster, spec: FaultSpec, names: Any) -> None:
    assert c.proxy is not None
    for name in names or ():
        try:
            c.proxy.remove_toxic(spec.node, name)
        except Exception:  # noqa: BLE001 - already gone (reset)
            pass


def _disable_link(c: Cluster, spec: FaultSpec) -> Any:
    assert c.proxy is not None
    c.proxy.disable(_link(spec))
    return None


def _enable_link(c: Cluster, spec: FaultSpec, state: Any) -> None:
    assert c.proxy is not None
    c.proxy.enable(spec.node)


# --- api faults -------------------------------------------------------------------------------------------------
def _kill_api(sig: int) -> Callable[[Cluster, FaultSpec], Any]:
    def inject(c: Cluster, spec: FaultSpec) -> Any:
        assert c.api is not None
        c.api.kill(sig)
        return c.api

    return inject


def _heal_api(c: Cluster, spec: FaultSpec, api: Any) -> None:
    if api is None:
        return
    if api.alive() and not api.wait_exit(10.0):
        api.stop(graceful=False)
    _restart_if_dead(api)


def _restart_api(c: Cluster, spec: FaultSpec) -> Any:
    assert c.api is not None
    c.api.restart(graceful=spec.params.get("graceful", True))
    return None


FAULTS: dict[str, FaultKind] = {f.name: f for f in [
    FaultKind("kill-worker", "worker", "worker", _kill_worker, _heal_worker,
              "SIGKILL the worker's main process and its pool children"),
    FaultKind("kill-child", "worker", "worker", _kill_child, _noop,
              "SIGKILL one pool child (the one running a task when the ledger says which)"),
    FaultKind("term-worker", "worker", "worker", _signal_worker(signal.SIGTERM), _heal_worker,
              "SIGTERM: warm shutdown, then start it again"),
    FaultKind("quit-worker", "worker", "worker", _signal_worker(signal.SIGQUIT), _heal_worker,
              "SIGQUIT: cold shutdown, then start it again"),
    FaultKind("pause-worker", "worker", "worker", _pause_node, _resume_node, "SIGSTOP the worker, then SIGCONT"),
    FaultKind("restart-worker", "worker", "worker", _restart_worker, _noop, "graceful stop and start"),
    FaultKind("scale-down", "worker", "worker", _scale_down, _scale_back, "remove a worker, add it back at heal"),
    FaultKind("stop-redis", "broker", "redis", _stop_redis, lambda c, s, n: _restart_if_dead(n),
              "stop Redis (SHUTDOWN saves with persistence), start it at heal"),
    FaultKind("kill-redis", "broker", "redis", _kill_redis, lambda c, s, n: _restart_if_dead(n),
              "SIGKILL Redis, start it at heal"),
    FaultKind("restart-redis", "broker", "redis", _restart_redis, _noop, "stop and start Redis at once"),
    FaultKind("pause-redis", "broker", "redis", lambda c, s: _pause_node(c, FaultSpec("pause", "redis")),
              _resume_node, "SIGSTOP Redis: connections hang, nothing is refused"),
    FaultKind("flushall", "broker", "redis", _redis_command("FLUSHALL"), _noop,
              "FLUSHALL: every queued message and binding is gone"),
    FaultKind("client-kill", "broker", "redis", _client_kill, _noop, "CLIENT KILL TYPE normal: every client reconnects"),
    FaultKind("memory-pressure", "broker", "redis", _memory_pressure, _heal_memory,
              "maxmemory just above use, noeviction: writes fail with OOM"),
    FaultKind("latency", "network", "link", _toxic("latency", latency=200, jitter=50), _remove_toxics,
              "add latency (ms) with jitter to a link"),
    FaultKind("cut", "network", "link", _toxic("timeout", timeout=0), _remove_toxics,
              "blackhole a link: bytes are held, nothing is refused"),
    FaultKind("down", "network", "link", _disable_link, _enable_link, "close the link and refuse new connections"),
    FaultKind("reset-peer", "network", "link", _toxic("reset_peer", timeout=0), _remove_toxics,
              "reset every connection on the link"),
    FaultKind("slicer", "network", "link", _toxic("slicer", average_size=8, size_variation=4, delay=1000),
              _remove_toxics, "slice the stream into small delayed pieces"),
    FaultKind("bandwidth", "network", "link", _toxic("bandwidth", rate=4), _remove_toxics,
              "limit a link's bandwidth (KB/s)"),
    FaultKind("kill-api", "api", "api", _kill_api(signal.SIGKILL), _heal_api, "SIGKILL the API, start it at heal"),
    FaultKind("term-api", "api", "api", _kill_api(signal.SIGTERM), _heal_api, "SIGTERM the API, start it at heal"),
    FaultKind("restart-api", "api", "api", _restart_api, _noop, "graceful restart of the API"),
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
        self._open: dict[str, tuple[FaultSpec, Any, Any]] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def busy(self, node: str) -> bool:
        """A fault is open on ``node`` (callers that inject directly use this to let faults take turns)."""
        with self._lock:
            return any(spec.node == node for spec, _state, _start in self._open.values())

    def inject(self, spec: FaultSpec) -> str:
        """Inject ``spec``; returns the fault id to heal it with."""
        kind = fault_kind(spec.kind)
        start = self.recorder.fault_start(spec.kind, spec.node, spec.params)
        try:
            state = kind.inject(self.cluster, spec)
        except Exception as exc:
            self.recorder.fault_end(start, error=f"inject failed: {exc}")
            raise
        with self._lock:
            self._open[start.fault_id] = (spec, state, start)
        return start.fault_id

    def heal(self, fid: str) -> None:
        with self._lock:
            spec, state, start = self._open.pop(fid)
        error = None
        try:
            fault_kind(spec.kind).heal(self.cluster, spec, state)
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
