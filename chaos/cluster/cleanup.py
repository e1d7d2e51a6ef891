"""Cleanup that always happens, even after a crash: every process and container we start carries our mark.

Processes inherit two environment variables (pool children and grandchildren too), containers carry the same
two labels. ``CELERY_CHAOS_RUN`` names the cluster, ``CELERY_CHAOS_OWNER`` the pid of the test process that owns
it. A new run removes everything whose owner is dead: what a crashed, Ctrl-C'd or pytest-timeout-killed run left.

A process can overwrite its environment block when it retitles itself (redis-server does, and Celery does with
``setproctitle`` installed), so every process group we start is also written down in a registry of pid files
(``register``); a leftover is found by either mark.

Owner liveness is a pid check, and a pid only means something in the pid namespace it came from: on a Docker
daemon shared by several hosts (or CI containers), or a registry in a home mounted into containers, somebody else's
live run would look orphaned. So every mark also names the host that made it (``HOST_VAR``, ``LABEL_HOST``,
``host_id``) and a sweep only judges what this host made. A process, container, network or registry entry with no
host mark (made by an older version) is never swept, whatever its owner pid: it may be anybody's. Removal by run id
(a cluster's own close) needs no host check: the run id is random and ours.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from chaos.waiting import wait_until

RUN_VAR = "CELERY_CHAOS_RUN"
OWNER_VAR = "CELERY_CHAOS_OWNER"
LABEL_RUN = "io.celery-chaos.run"
LABEL_OWNER = "io.celery-chaos.owner"
HOST_VAR = "CELERY_CHAOS_HOST"
LABEL_HOST = "io.celery-chaos.host"


@functools.cache
def host_id() -> str:
    """Where an owner pid can be checked: hostname, machine id (when readable) and pid namespace.

    The hostname and machine id tell machines apart; the pid namespace tells apart containers of one machine that
    share its hostname (``--network host``) or its machine id. A CI container restarted gets a new namespace, so
    what its previous life left is another host's to this one: leaked rather than wrongly killed.
    """
    parts = [socket.gethostname()]
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine = Path(path).read_text().strip()
        except OSError:
            continue
        if machine:
            parts.append(machine)
            break
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))  # e.g. pid:[4026531836]
    except OSError:
        pass
    return "/".join(parts)


def registry_dir() -> Path:
    d = Path(os.environ.get("CELERY_CHAOS_STATE", Path.home() / ".cache" / "celery-chaos")) / "pids"
    d.mkdir(parents=True, exist_ok=True)
    return d


def register(run_id: str, name: str, pid: int) -> Path:
    """Write down a process group leader we started (its create time guards against pid reuse)."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    path = registry_dir() / f"{run_id}-{name}-{pid}.json"
    path.write_text(json.dumps({"run": run_id, "owner": os.getpid(), "host": host_id(), "pid": pid,
                                "created": created}))
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _registered(run_id: str | None, orphans_only: bool) -> list[tuple[Path, psutil.Process | None]]:
    out: list[tuple[Path, psutil.Process | None]] = []
    for path in registry_dir().glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if run_id is not None and entry.get("run") != run_id:
            continue
        if entry.get("host") != host_id():
            continue  # written on another host (a shared home) or by an older version: its pid means nothing here
        owner = int(entry.get("owner", 0))
        if orphans_only and (owner == os.getpid() or psutil.pid_exists(owner)):
            continue
        try:
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry.get("created", 0))) > 1.0:
                proc = None  # the pid was reused by somebody else's process
        except (psutil.Error, KeyError, ValueError):
            proc = None
        out.append((path, proc))
    return out


def mark(run_id: str) -> dict[str, str]:
    """Environment variables that tag a process as ours."""
    return {RUN_VAR: run_id, OWNER_VAR: str(os.getpid()), HOST_VAR: host_id()}


def labels(run_id: str) -> dict[str, str]:
    """Docker labels that tag a container or network as ours."""
    return {LABEL_RUN: run_id, LABEL_OWNER: str(os.getpid()), LABEL_HOST: host_id()}


def _marks(proc: psutil.Process) -> tuple[str | None, str | None, str | None]:
    try:
        env = proc.environ()
    except (psutil.Error, OSError):
        return None, None, None
    return env.get(RUN_VAR), env.get(OWNER_VAR), env.get(HOST_VAR)


def _orphaned(marks: Mapping[str, str]) -> bool:
    """Docker labels of a container or network this host made and whose owner process is gone."""
    if marks.get(LABEL_HOST) != host_id():
        return False  # another host's (its owner may be alive there) or an older version's: not ours to judge
    owner = marks.get(LABEL_OWNER, "")
    return owner.isdigit() and int(owner) != os.getpid() and not psutil.pid_exists(int(owner))


def our_processes(run_id: str | None = None, *, orphans_only: bool = False) -> list[psutil.Process]:
    """Processes carrying our mark (or registered): of one run, of all runs, or only those whose owner is gone.

    Only this host's count (``host_id``), but for one run's processes: its run id is enough.
    """
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for _path, leader in _registered(run_id, orphans_only):
        if leader is not None:
            try:
                found.update((p.pid, p) for p in (leader, *leader.children(recursive=True)))
            except psutil.Error:
                pass
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        run, owner, host = _marks(proc)
        if run is None:
            continue
        if run_id is not None and run != run_id:
            continue
        if host != host_id() and (run_id is None or host is not None):
            continue  # another host's (a container seen from its host), or an older version's in a sweep
        if orphans_only and owner is not None and owner.isdigit() and psutil.pid_exists(int(owner)):
            continue
        found.setdefault(proc.pid, proc)
    return list(found.values())


def kill_processes(procs: Iterable[psutil.Process], timeout: float = 5.0) -> int:
    """SIGCONT (a paused process cannot die of SIGTERM) then SIGKILL, and reap. Returns how many were killed."""
    procs = list(procs)
    for proc in procs:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
    gone, _alive = wait_dead(procs, timeout)
    return len(gone)


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def wait_dead(procs: Iterable[psutil.Process], timeout: float) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Wait until every process has died: (dead, still alive). A zombie counts as dead: it holds no port, file or
    memory any more, and an orphan's reaper is init, whose pace is not ours (psutil.wait_procs waits for the
    reaping too, about 1.4 s per killed Celery worker here)."""
    procs = alive = list(procs)

    def all_dead() -> bool:
        nonlocal alive
        alive = [p for p in alive if not _dead(p)]
        return not alive

    wait_until(all_dead, timeout, 0.02, error=None)
    return [p for p in procs if p not in alive], alive


def forget_run(run_id: str) -> None:
    """Drop a closed run's registry entries (its processes are gone)."""
    for path, _leader in _registered(run_id, orphans_only=False):
        unregister(path)


def remove_leftovers() -> int:
    """Kill processes and remove containers left by earlier runs whose owner died. Returns what was removed."""
    removed = kill_processes(our_processes(orphans_only=True))
    for path, _leader in _registered(None, orphans_only=True):
        unregister(path)
    removed += remove_containers(orphans_only=True)
    return removed


def remove_containers(run_id: str | None = None, *, orphans_only: bool = False) -> int:
    """Remove our containers and networks (one run's, this host's, or this host's orphans). No Docker: nothing to do.

    A sweep (no ``run_id``) only touches what carries this host's label: on a shared daemon another host's
    containers are alive as far as we can tell, and unlabelled ones (older versions) may be anybody's.
    """
    try:
        import docker  # noqa: PLC0415 - optional dependency
    except ImportError:
        return 0
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:  # noqa: BLE001 - no daemon means no containers of ours
        return 0
    flt = {"label": f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN}
    removed = 0
    try:
        for c in client.containers.list(all=True, filters=flt):
            if not _removable(c.labels or {}, run_id, orphans_only):
                continue
            try:
                c.remove(force=True)
                removed += 1
            except Exception:  # noqa: BLE001
                pass
        for n in client.networks.list(filters=flt):
            if not _removable(n.attrs.get("Labels") or {}, run_id, orphans_only):
                continue
            try:
                n.remove()
            except Exception:  # noqa: BLE001
                pass
    finally:
        client.close()
    return removed


def _removable(marks: Mapping[str, str], run_id: str | None, orphans_only: bool) -> bool:
    if orphans_only:
        return _orphaned(marks)
    return run_id is not None or marks.get(LABEL_HOST) == host_id()
