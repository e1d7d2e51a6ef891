"""``Recorder``: the thread-safe writer of a history, streaming each event to disk as it happens."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO, Any

from chaos.history.events import COMPLETION_PHASES, Event, Fault, Meta, Note, Op, Probe, dumps_event
from chaos.history.log import History


class Recorder:
    """Thread-safe writer of a history: numbers events, stamps times, streams each line to disk at once.

    ``time`` is ``monotonic() - start`` (orders events, immune to clock steps); ``wall`` is epoch time
    (compared with the ledger). Invariants of the model are enforced here, where a bug is cheap to find: a
    process has at most one open request, and a completion must match an open invocation.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        meta: Meta | None = None,
        *,
        fsync: bool = False,
        monotonic: Any = time.monotonic,
        wall_clock: Any = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._t0 = monotonic()
        self._fsync = fsync
        self._index = 0
        self._fault_seq = 0
        self._open: dict[int, Op] = {}
        self._open_faults: dict[str, Fault] = {}
        self._history = History()
        self._file: IO[str] | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        meta = meta if meta is not None else Meta()
        if not meta.started_wall:
            meta.started_wall = wall_clock()
        with self._lock:
            self._write(meta)

    def elapsed(self) -> float:
        """Seconds since the history began, on the clock its events use."""
        return self._now()[0]

    # -- plumbing

    def _now(self) -> tuple[float, float]:
        return self._monotonic() - self._t0, self._wall_clock()

    def _next_index(self) -> int:
        i = self._index
        self._index += 1
        return i

    def _write(self, event: Event) -> None:
        self._history.append(event)
        if self._file is not None:
            self._file.write(dumps_event(event) + "\n")
            self._file.flush()
            if self._fsync:
                import os

                os.fsync(self._file.fileno())

    # -- client operations

    def invoke(
        self, process: int, f: str, *, task_id: str | None = None, value: dict[str, Any] | None = None
    ) -> Op:
        """Record that ``process`` sent a request; returns the invocation to pass to :meth:`complete`."""
        with self._lock:
            if process in self._open:
                raise ValueError(f"process {process} already has an open {self._open[process].f}")
            t, wall = self._now()
            op = Op(self._next_index(), process, f, "invoke", t, wall, task_id, value)
            self._open[process] = op
            self._write(op)
            return op

    def complete(
        self,
        invocation: Op,
        phase: str,
        *,
        task_id: str | None = None,
        value: dict[str, Any] | None = None,
        error: str | None = None,
        latency: float | None = None,
    ) -> Op:
        """Record the fate of a request: ok (happened), fail (did not happen) or info (unknown).

        ``latency``: how long the target took to answer, where the client measured it on the wire; else the
        time since the invocation (which counts the client's own queueing too)."""
        if phase not in COMPLETION_PHASES:
            raise ValueError(f"completion phase must be one of {COMPLETION_PHASES}, not {phase!r}")
        with self._lock:
            if self._open.get(invocation.process) is not invocation:
                raise ValueError(
                    f"op {invocation.index} is not the open request of process {invocation.process}"
                )
            del self._open[invocation.process]
            t, wall = self._now()
            op = Op(
                self._next_index(),
                invocation.process,
                invocation.f,
                phase,
                t,
                wall,
                task_id if task_id is not None else invocation.task_id,
                value,
                error,
                latency=latency if latency is not None else t - invocation.time,
            )
            self._write(op)
            return op

    def ok(self, invocation: Op, **kw: Any) -> Op:
        return self.complete(invocation, "ok", **kw)

    def fail(self, invocation: Op, **kw: Any) -> Op:
        return self.complete(invocation, "fail", **kw)

    def info(self, invocation: Op, **kw: Any) -> Op:
        return self.complete(invocation, "info", **kw)

    # -- faults, probes, notes

    def fault_start(
        self, name: str, node: str, params: dict[str, Any] | None = None, error: str | None = None
    ) -> Fault:
        with self._lock:
            self._fault_seq += 1
            t, wall = self._now()
            fault = Fault(
                self._next_index(),
                f"{name}@{node}#{self._fault_seq}",
                name,
                node,
                "start",
                t,
                wall,
                dict(params or {}),
                error,
            )
            self._open_faults[fault.fault_id] = fault
            self._write(fault)
            return fault

    def fault_end(self, start: Fault | str, error: str | None = None) -> Fault:
        fault_id = start if isinstance(start, str) else start.fault_id
        with self._lock:
            s = self._open_faults.pop(fault_id, None)
            if s is None:
                raise ValueError(f"fault {fault_id!r} is not open")
            t, wall = self._now()
            fault = Fault(self._next_index(), fault_id, s.name, s.node, "end", t, wall, dict(s.params), error)
            self._write(fault)
            return fault

    def probe(self, name: str, value: Any) -> Probe:
        with self._lock:
            t, wall = self._now()
            probe = Probe(self._next_index(), name, t, wall, value)
            self._write(probe)
            return probe

    def note(self, message: str, data: dict[str, Any] | None = None) -> Note:
        with self._lock:
            t, wall = self._now()
            note = Note(self._next_index(), message, t, wall, data)
            self._write(note)
            return note

    # -- results

    @property
    def open_requests(self) -> list[Op]:
        with self._lock:
            return list(self._open.values())

    @property
    def open_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._open_faults.values())

    def history(self) -> History:
        """A snapshot of everything recorded so far."""
        with self._lock:
            return History(list(self._history.events))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
