"""Cleanup that always happens, even after a crash: every process and container we start carries our mark.

Processes inherit two environment variables (pool children and grandchildren too), containers carry the same
two labels. ``CELERY_CHAOS_RUN`` names the cluster, ``CELERY_CHAOS_OWNER`` the pid of the test process that owns
it. A new run removes everything whose owner is dead: what a crashed, Ctrl-C'd or pytest-timeout-killed run left.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

import psutil

RUN_VAR = "CELERY_CHAOS_RUN"
OWNER_VAR = "CELERY_CHAOS_OWNER"
LABEL_RUN = "io.celery-chaos.run"
LABEL_OWNER = "io.celery-chaos.owner"


def mark(run_id: str) -> dict[str, str]:
    """Environment variables that tag a process as ours."""
    return {RUN_VAR: run_id, OWNER_VAR: str(os.getpid())}


def labels(run_id: str) -> dict[str, str]:
    """Docker labels that tag a container or network as ours."""
    return {LABEL_RUN: run_id, LABEL_OWNER: str(os.getpid())}


def _marks(proc: psutil.Process) -> tuple[str | None, str | None]:
    try:
        env = proc.environ()
    except (psutil.Error, OSError):
        return None, None
    return env.get(RUN_VAR), env.get(OWNER_VAR)


def our_processes(run_id: str | None = None, *, orphans_only: bool = False) -> list[psutil.Process]:
    """Processes carrying our mark: of one run, of all runs, or only those whose owner is gone."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        run, owner = _marks(proc)
        if run is None:
            continue
        if run_id is not None and run != run_id:
            continue
        if orphans_only and owner is not None and owner.isdigit() and psutil.pid_exists(int(owner)):
            continue
        found.append(proc)
    return found


def kill_processes(procs: Iterable[psutil.Process], timeout: float = 5.0) -> int:
    """SIGCONT (a paused process cannot die of SIGTERM) then SIGKILL, and reap. Returns how many were killed."""
    procs = list(procs)
    for proc in procs:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
    gone, alive = psutil.wait_procs(procs, timeout=timeout)
    return len(gone)


def remove_leftovers() -> int:
    """Kill processes and remove containers left by earlier runs whose owner died. Returns what was removed."""
    removed = kill_processes(our_processes(orphans_only=True))
    removed += remove_containers(orphans_only=True)
    return removed


def remove_containers(run_id: str | None = None, *, orphans_only: bool = False) -> int:
    """Remove our containers and networks (all, one run's, or orphans'). No Docker: nothing to do."""
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
            owner = c.labels.get(LABEL_OWNER, "")
            if orphans_only and owner.isdigit() and psutil.pid_exists(int(owner)) and int(owner) != os.getpid():
                continue
            if orphans_only and owner == str(os.getpid()):
                continue
            try:
                c.remove(force=True)
                removed += 1
            except Exception:  # noqa: BLE001
                pass
        for n in client.networks.list(filters=flt):
            owner = n.attrs.get("Labels", {}).get(LABEL_OWNER, "")
            if orphans_only and owner.isdigit() and psutil.pid_exists(int(owner)):
                continue
            try:
                n.remove()
            except Exception:  # noqa: BLE001
                pass
    finally:
        client.close()
    return removed
