"""Reading the probe's records back: raw records, worker events, and a ledger in ``chaos.history``'s schema.

Every ``*.jsonl`` file of the records dir is one process's stream (a reused pid appends a new stream to the same
file: its ``seq`` starts again at 1). Lines that do not parse (a torn last line, a stray write) are skipped and
reported in ``warnings``.

Executions are built per stream, so a task's ``task_prerun`` is paired with the ``task_postrun`` of the same
process: an execution is keyed by (task id, process, prerun time), and a prerun that no postrun follows is an
execution that never finished (``finished_at`` None, ``outcome`` None: the process died mid-task). When the
process died after ``task_success``/``task_failure`` but before ``task_postrun``, that signal's time and outcome
are kept. A postrun without a state (the body was interrupted by a BaseException: SystemExit, a terminate) has
``finished_at`` and outcome None. A ``task_revoked`` with ``terminated`` (revoke(terminate=True) signals the pool
child) gives outcome ``revoked`` to the executions of that task on that worker that had none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.probe.celery_chaos_probe import EVENT_STATE

OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry", "REVOKED": "revoked"}
CLOSING = {"task_success": "success", "task_failure": "failure", "task_internal_error": "failure",
           "task_retry": "retry"}
WORKER_EVENTS = ("worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown", "worker_process_init",
                 "worker_process_shutdown")
TIMELINE_KEYS = ("event", "t", "pid", "ppid", "how", "sig", "exitcode", "child_pid")


@dataclass
class ProbeRecords:
    """Every record of a records dir, in time order (ties: file, then line), each with its ``file``."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    streams: list[list[dict[str, Any]]] = field(default_factory=list)  # one process each, in write order


def _parse_file(path: Path, warnings: list[str]) -> list[list[dict[str, Any]]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        warnings.append(f"{path.name}: unreadable ({exc.strerror})")
        return []
    streams: list[list[dict[str, Any]]] = []
    last_seq = None
    lines = data.split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw:
            continue
        torn = lineno == len(lines)  # no newline after it: the writer died mid-line (or is writing it now)
        try:
            rec = json.loads(raw.decode("utf-8", "replace"))
            if not isinstance(rec, dict) or not isinstance(rec.get("event"), str):
                raise ValueError("not a probe record")
            t = rec.get("t")
            if not isinstance(t, (int, float)):
                raise ValueError("no time")
        except ValueError as exc:
            what = "torn last line" if torn else f"unparseable ({exc})"
            warnings.append(f"{path.name}:{lineno}: skipped, {what}")
            continue
        rec["file"] = path.name
        seq = rec.get("seq")
        if not streams or (isinstance(seq, int) and isinstance(last_seq, int) and seq <= last_seq):
            streams.append([])  # a new process reused this pid: a new stream
        last_seq = seq if isinstance(seq, int) else last_seq
        streams[-1].append(rec)
    return streams


def read_records(probe_dir: str | Path, since: float | None = None) -> ProbeRecords:
    """All records under ``probe_dir`` (none when it does not exist); ``since`` drops records before that time."""
    out = ProbeRecords()
    d = Path(probe_dir)
    if not d.is_dir():
        return out
    for path in sorted(d.glob("*.jsonl")):
        out.files += 1
        for stream in _parse_file(path, out.warnings):
            kept = [r for r in stream if since is None or float(r["t"]) >= since]
            if kept:
                out.streams.append(kept)
    order = {id(r): (si, ri) for si, s in enumerate(out.streams) for ri, r in enumerate(s)}
    out.records = sorted((r for s in out.streams for r in s), key=lambda r: (float(r["t"]), order[id(r)]))
    return out


def _worker_key(rec: Mapping[str, Any]) -> str:
    return str(rec.get("node") or rec.get("hostname") or f"pid-{rec.get('pid')}")


def _worker_name(rec: Mapping[str, Any]) -> str:
    """The ledger's ``worker``: Celery's hostname when it names the framework's node (``worker-0@host``), else the
    node (what fault windows name), else whatever is known."""
    node = rec.get("node")
    host = rec.get("hostname")
    if host and (not node or node == host or node in str(host).split("@")):
        return str(host)
    return str(node or host or f"pid-{rec.get('pid')}")


def worker_events(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per worker (the framework's node name): its Celery hostname, main and pool-child pids, the timeline of its
    ``worker_*`` events (init, ready, shutting_down, shutdown, process_init, process_shutdown) and, once ready, the
    delivery ``settings`` it runs with."""
    workers: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = _worker_key(rec)
        w = workers.setdefault(key, {"node": rec.get("node"), "hostname": None, "pids": [], "main_pids": [],
                                     "child_pids": [], "events": []})
        if rec.get("hostname") and not w["hostname"]:
            w["hostname"] = rec["hostname"]
        if rec.get("event") == "worker_ready" and isinstance(rec.get("settings"), Mapping):
            w["settings"] = dict(rec["settings"])  # the latest start's delivery settings
        pid = rec.get("pid")
        if isinstance(pid, int) and pid not in w["pids"]:
            w["pids"].append(pid)
        event = rec.get("event")
        if event in ("worker_init", "worker_ready", "worker_shutting_down", "worker_shutdown", "task_received"):
            if isinstance(pid, int) and pid not in w["main_pids"]:
                w["main_pids"].append(pid)
        if event in ("worker_process_init", "task_prerun") and isinstance(pid, int) and pid not in w["child_pids"]:
            if pid not in w["main_pids"]:  # solo/threads pools run tasks in the main process
                w["child_pids"].append(pid)
        if event in WORKER_EVENTS:
            w["events"].append({k: rec[k] for k in TIMELINE_KEYS if k in rec})
    return workers


def executions_from_records(probe: ProbeRecords) -> list[dict[str, Any]]:
    """The ledger's task list (``LedgerTask`` dicts plus ``name``), ordered by first record."""
    tasks: dict[str, dict[str, Any]] = {}
    for rec in probe.records:
        tid = rec.get("task_id")
        if not tid:
            continue
        t = float(rec["t"])
        task = tasks.get(tid)
        if task is None:
            task = tasks[tid] = {"task_id": tid, "name": None, "state": "PENDING", "mode": "celery",
                                 "expected_effects": 0, "effects": 0, "revoked_at": None, "created_at": t,
                                 "executions": []}
        if rec.get("task") and not task["name"]:
            task["name"] = rec["task"]
        event = rec["event"]
        state = rec.get("state") if event == "task_postrun" else EVENT_STATE.get(event)
        if state:
            task["state"] = str(state)
        if event == "task_revoked" and task["revoked_at"] is None:
            task["revoked_at"] = t

    for stream in probe.streams:
        open_runs: dict[str, list[dict[str, Any]]] = {}
        for rec in stream:
            tid = rec.get("task_id")
            if not tid or tid not in tasks:
                continue
            event = rec["event"]
            t = float(rec["t"])
            if event == "task_prerun":
                run = {"attempt": 0, "worker": _worker_name(rec), "pid": rec.get("pid"), "started_at": t,
                       "finished_at": None, "outcome": None, "node": rec.get("node"),
                       "hostname": rec.get("hostname"), "retries": rec.get("retries"),
                       "redelivered": rec.get("redelivered"), "exception": None}
                open_runs.setdefault(tid, []).append(run)
                tasks[tid]["executions"].append(run)
            elif event in CLOSING and open_runs.get(tid):
                run = open_runs[tid][-1]
                run["finished_at"] = t
                run["outcome"] = CLOSING[event]
                if rec.get("exc"):
                    run["exception"] = rec["exc"]
            elif event == "task_postrun" and open_runs.get(tid):
                run = open_runs[tid].pop()
                run["finished_at"] = t
                state = str(rec.get("state") or "")
                run["outcome"] = OUTCOMES.get(state, state.lower() or run["outcome"])

    for rec in probe.records:  # revoke(terminate=True): the pool child was killed on purpose
        if rec["event"] != "task_revoked" or not rec.get("terminated") or rec.get("task_id") not in tasks:
            continue
        t = float(rec["t"])
        for run in tasks[rec["task_id"]]["executions"]:
            # the child either died (no postrun) or ran its postrun with no state (the body was interrupted)
            if run["outcome"] is None and run["started_at"] <= t and run["node"] == rec.get("node"):
                run["finished_at"] = t if run["finished_at"] is None else min(run["finished_at"], t)
                run["outcome"] = "revoked"

    for task in tasks.values():
        task["executions"].sort(key=lambda r: r["started_at"])
        for i, run in enumerate(task["executions"], 1):
            run["attempt"] = i
    return sorted(tasks.values(), key=lambda x: x["created_at"])


def read_executions(probe_dir: str | Path, since: float | None = None,
                    include_records: bool = False) -> dict[str, Any]:
    """Merge a records dir into a ledger: ``{"tasks": [...], "workers": {...}, "probe": {...}}``.

    ``tasks`` follows ``chaos.history.LedgerTask`` (``Ledger.from_dict`` reads it; the extra keys ``name`` and,
    per execution, ``node``, ``hostname``, ``retries``, ``redelivered``, ``exception`` are ignored there):
    ``state`` is the last Celery state the records show (RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED,
    REJECTED...), ``created_at`` the first record's time, ``expected_effects``/``effects`` 0 (a probe sees no
    side effects). ``workers`` is ``worker_events``; ``probe`` says how many files and records were read, whether
    any worker loaded the probe (``loaded``: some worker_init/worker_ready record exists), and the warnings.
    ``include_records`` adds the raw records (``records``), for a report of where each task went. ``since`` (epoch
    seconds) drops earlier records, e.g. those of a previous scenario on a shared cluster: an execution that
    started before it is not seen.
    """
    probe = read_records(probe_dir, since=since)
    loaded = any(r["event"] in ("worker_init", "worker_ready") for r in probe.records)
    if since is not None and not loaded:  # a worker started before ``since`` has loaded it too
        loaded = any(r["event"] in ("worker_init", "worker_ready") for r in read_records(probe_dir).records)
    out: dict[str, Any] = {
        "tasks": executions_from_records(probe),
        "workers": worker_events(probe.records),
        "probe": {"dir": str(probe_dir), "files": probe.files, "records": len(probe.records), "loaded": loaded,
                  "warnings": probe.warnings},
    }
    if include_records:
        out["records"] = probe.records
    return out
