"""Ground truth for any Celery app without code changes: a probe in the target's workers, read back as a ledger.

The backends start every worker with a hook directory first on its ``PYTHONPATH`` (the command is left exactly as
written). The directory holds two stdlib-only files: ``sitecustomize.py`` (from ``sitecustomize_hook.py``), which
Python's ``site`` imports at start-up, and ``celery_chaos_probe.py``, which it loads when ``CELERY_CHAOS_PROBE_DIR``
is set. The probe records Celery's signals (received, prerun, postrun, success, failure, retry, revoked, worker
ready/shutdown, pool children...) as JSON lines, one file per process, in that directory: outside the broker under
test, and written so that a SIGKILL loses nothing already recorded.

Where things are (``workdir`` is the cluster's):

* host: ``<workdir>/probe/hook`` (the hook) and ``<workdir>/probe/records`` (``records_dir``);
* local backend: the worker sees those same paths;
* docker backend: ``<workdir>/probe`` is bind-mounted at ``/celery-chaos-probe`` in each worker container, so
  the records are read on the host from the same ``records_dir``. Pids there are the container's (see
  ``namespace_pid`` to translate a host pid, e.g. the one ``kill_child`` returns).

``read_executions(records_dir(cluster.workdir))`` merges the records into the ledger schema of
``chaos.history`` (see ``chaos.probe.reader``). Set ``CELERY_CHAOS_PROBE=off`` in the framework's environment
to start workers without the probe.
"""

from __future__ import annotations

import os
from pathlib import Path

from chaos.probe.celery_chaos_probe import DIR_ENV, NODE_ENV
from chaos.probe.reader import (
    ProbeRecords,
    executions_from_records,
    read_executions,
    read_records,
    worker_events,
)

__all__ = [
    "DIR_ENV",
    "NODE_ENV",
    "DISABLE_ENV",
    "ProbeRecords",
    "enabled",
    "executions_from_records",
    "install_hook",
    "namespace_pid",
    "prepare",
    "probe_root",
    "read_cluster",
    "read_executions",
    "read_records",
    "records_dir",
    "worker_env",
    "worker_events",
]

DISABLE_ENV = "CELERY_CHAOS_PROBE"  # "off" / "0" / "false" / "no" in the framework's environment: no probe
_HERE = Path(__file__).resolve().parent
HOOK_FILES = {"sitecustomize.py": "sitecustomize_hook.py", "celery_chaos_probe.py": "celery_chaos_probe.py"}


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def probe_root(workdir: Path) -> Path:
    return Path(workdir) / "probe"


def records_dir(workdir: Path) -> Path:
    """Where the records of a cluster's workers are, on the host (both backends)."""
    return probe_root(workdir) / "records"


def install_hook(dest: Path) -> Path:
    """Write the hook (``sitecustomize.py`` + ``celery_chaos_probe.py``) into ``dest``; rewrites only what changed,
    atomically, so a worker starting meanwhile never imports half a file."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, source in HOOK_FILES.items():
        data = (_HERE / source).read_bytes()
        path = dest / name
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        tmp = dest / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return dest


def prepare(workdir: Path) -> tuple[Path, Path]:
    """Make ``<workdir>/probe/hook`` (installed) and ``<workdir>/probe/records``; return both (host paths)."""
    root = probe_root(workdir)
    hook = install_hook(root / "hook")
    records = records_dir(workdir)
    records.mkdir(parents=True, exist_ok=True)
    try:
        records.chmod(0o777)  # a container running as another uid writes here too (the workdir is private)
    except OSError:
        pass
    return hook, records


def worker_env(node: str, hook: str, records: str, pythonpath: str | None = None) -> dict[str, str]:
    """The variables a worker needs for the probe, as the worker sees the paths; ``pythonpath`` is the PYTHONPATH
    it would have had (kept after the hook)."""
    rest = [p for p in pythonpath.split(os.pathsep) if p != hook] if pythonpath else []  # "" entries mean cwd
    return {"PYTHONPATH": os.pathsep.join([hook, *rest]), DIR_ENV: records, NODE_ENV: node}


def read_cluster(cluster: object, since: float | None = None, include_records: bool = False) -> dict | None:
    """``read_executions`` over a cluster's records dir; None when no worker of it loaded the probe (disabled, or
    a command that ignores PYTHONPATH / sitecustomize: ``python -I``, ``-E``, ``-S``, a non-Python worker)."""
    workdir = getattr(cluster, "workdir", None)
    if workdir is None:
        return None
    result = read_executions(records_dir(Path(workdir)), since=since, include_records=include_records)
    return result if result["probe"]["loaded"] else None


def namespace_pid(host_pid: int) -> int | None:
    """The pid a process has in its own pid namespace (a container's), from the host's ``/proc``: the last field of
    ``NSpid``. Equal to ``host_pid`` outside containers; None when the process is gone or /proc says nothing."""
    try:
        with open(f"/proc/{int(host_pid)}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    fields = line.split()[1:]
                    return int(fields[-1]) if fields else None
    except (OSError, ValueError):
        return None
    return None
