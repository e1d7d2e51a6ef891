"""What clients saw, what was done to the cluster, and what the target says happened: one JSONL file per run.

The model is Jepsen's. Every client request is an ``op`` recorded twice: an ``invoke`` when it is sent and
exactly one completion for the same ``process`` when its fate is known: ``ok`` (it happened), ``fail`` (it
definitely did not happen) or ``info`` (unknown: timeout, reset). Faults are ``start``/``end`` pairs sharing a
``fault_id``; a ``probe`` carries ground truth read from the target (the ledger); the first line is ``meta``.

The file is append-only and written line by line while the run goes, so a crash keeps the evidence. Loading
tolerates a torn last line. Nothing here interprets the history: that is the checkers' job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

SCHEMA_VERSION = 1

OpF = Literal["submit", "status", "cancel", "health", "drain"]
OpPhase = Literal["invoke", "ok", "fail", "info"]
FaultPhase = Literal["start", "end"]

COMPLETION_PHASES = ("ok", "fail", "info")
NOT_FOUND = "NOT_FOUND"
LEDGER_PROBE = "ledger"
EXECUTIONS_PROBE = "executions"  # the worker probe's records (chaos.probe): executions only, no effects
BROKER_PROBE = "broker"  # where each unfinished task was at the end (chaos.inspector), looked at twice
SETTLED_PROBE = "settled"  # tasks decided before the quiesce deadline, and why (chaos.settle)


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the keys a dataclass knows: newer writers may add fields, older readers must not choke."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


# --------------------------------------------------------------------------------------------- events


@dataclass
class Meta:
    """First line of a history: what was run, against what, and how to replay it."""

    type: ClassVar[str] = "meta"
    scenario: str = ""
    seed: int | None = None
    target: str = ""
    started_wall: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    replay: str | None = None
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_fields_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Meta:
        return cls(**_known_fields(cls, data))


@dataclass
class Op:
    """One half of a client request: its invocation or its completion."""

    type: ClassVar[str] = "op"
    index: int
    process: int
    f: str
    phase: str
    time: float
    wall: float
    task_id: str | None = None
    value: dict[str, Any] | None = None
    error: str | None = None
    latency: float | None = None

    @property
    def is_invoke(self) -> bool:
        return self.phase == "invoke"

    @property
    def status(self) -> str | None:
        """The task status this op reports (``value.status``), if any."""
        if self.value is None:
            return None
        status = self.value.get("status")
        return None if status is None else str(status)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_fields_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Op:
        return cls(**_known_fields(cls, data))


@dataclass
class Fault:
    """The start or the end of one fault; both halves share ``fault_id``."""

    type: ClassVar[str] = "fault"
    index: int
    fault_id: str
    name: str
    node: str
    phase: str
    time: float
    wall: float
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_fields_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        return cls(**_known_fields(cls, data))


@dataclass
class Probe:
    """Ground truth read from the target (``name == "ledger"``: the ledger JSON, see :class:`Ledger`)."""

    type: ClassVar[str] = "probe"
    index: int
    name: str
    time: float
    wall: float
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_fields_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        return cls(**_known_fields(cls, data))


@dataclass
class Note:
    """Free-form commentary (phase changes of the scenario, warnings); never judged."""

    type: ClassVar[str] = "note"
    index: int
    message: str
    time: float = 0.0
    wall: float = 0.0
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_fields_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Note:
        return cls(**_known_fields(cls, data))


Event = Meta | Op | Fault | Probe | Note
_EVENT_TYPES: dict[str, type] = {cls.type: cls for cls in (Meta, Op, Fault, Probe, Note)}


def _fields_dict(obj: Any) -> dict[str, Any]:
    # Shallow on purpose: values are already JSON-shaped; dataclasses.asdict would deep-copy every payload.
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def event_to_dict(event: Event) -> dict[str, Any]:
    return event.to_dict()


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from its JSON form; an unknown ``type`` is a ValueError."""
    kind = data.get("type")
    cls = _EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    event: Event = cls.from_dict(data)  # type: ignore[attr-defined]
    return event


def dumps_event(event: Event) -> str:
    return json.dumps(event.to_dict(), separators=(",", ":"), default=str)


# --------------------------------------------------------------------------------------------- ledger


@dataclass
class Execution:
    """One run of a task body on a worker, as the target recorded it."""

    attempt: int
    worker: str
    pid: int
    started_at: float
    finished_at: float | None = None
    outcome: str | None = None  # success | failure | revoked | fenced | None (never finished)

    def to_dict(self) -> dict[str, Any]:
        return _fields_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Execution:
        return cls(**_known_fields(cls, data))


@dataclass
class LedgerTask:
    """The target's own record of one task: its state, its side effects and every execution."""

    task_id: str
    state: str
    mode: str = "celery"
    expected_effects: int = 1
    effects: int = 0
    revoked_at: float | None = None
    created_at: float = 0.0
    executions: list[Execution] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = _fields_dict(self)
        d["executions"] = [e.to_dict() for e in self.executions]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerTask:
        kw = _known_fields(cls, data)
        kw["executions"] = [Execution.from_dict(e) for e in data.get("executions") or ()]
        return cls(**kw)


@dataclass
class Ledger:
    """Ground truth read from the target at the end of a run (times are epoch seconds, like ``Op.wall``)."""

    tasks: list[LedgerTask] = field(default_factory=list)

    def by_id(self) -> dict[str, LedgerTask]:
        return {t.task_id: t for t in self.tasks}

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ledger:
        return cls(tasks=[LedgerTask.from_dict(t) for t in data.get("tasks") or ()])


# --------------------------------------------------------------------------------------------- derived views


@dataclass(frozen=True)
class OpPair:
    """A request: its invocation and its completion (None when the run ended first, which counts as info)."""

    invoke: Op
    completion: Op | None

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def process(self) -> int:
        return self.invoke.process

    @property
    def phase(self) -> str:
        """ok / fail / info; a request that never completed is info (its effect is unknown)."""
        return self.completion.phase if self.completion is not None else "info"

    @property
    def task_id(self) -> str | None:
        """The task the request is about: given on invoke, or returned by the completion (submit)."""
        if self.invoke.task_id:
            return self.invoke.task_id
        c = self.completion
        if c is None:
            return None
        if c.task_id:
            return c.task_id
        if c.value and c.value.get("task_id"):
            return str(c.value["task_id"])
        return None

    @property
    def value(self) -> dict[str, Any] | None:
        return self.completion.value if self.completion is not None else None

    @property
    def status(self) -> str | None:
        return self.completion.status if self.completion is not None else None

    @property
    def invoke_time(self) -> float:
        return self.invoke.time

    @property
    def complete_time(self) -> float:
        """When the fate was known; +inf for a request still open when the history ended."""
        return self.completion.time if self.completion is not None else float("inf")

    @property
    def latency(self) -> float | None:
        c = self.completion
        if c is None:
            return None
        return c.latency if c.latency is not None else c.time - self.invoke.time

    def precedes(self, other: OpPair) -> bool:
        """Real-time order: this request was complete before ``other`` was sent (only then may they be compared)."""
        return self.complete_time < other.invoke_time

    def to_dict(self) -> dict[str, Any]:
        return {
            "invoke": self.invoke.to_dict(),
            "completion": None if self.completion is None else self.completion.to_dict(),
        }


@dataclass(frozen=True)
class FaultWindow:
    """A fault from its start to its end (``end`` None: never ended before the history did)."""

    fault_id: str
    name: str
    node: str
    start: float
    end: float | None
    start_wall: float
    end_wall: float | None
    params: Mapping[str, Any]
    error: str | None = None

    def overlaps(self, start: float, end: float, grace: float = 0.0) -> bool:
        """Does the interval [start, end] touch this window extended by ``grace`` after its end?"""
        window_end = float("inf") if self.end is None else self.end + grace
        return start <= window_end and end >= self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault_id": self.fault_id,
            "name": self.name,
            "node": self.node,
            "start": self.start,
            "end": self.end,
            "start_wall": self.start_wall,
            "end_wall": self.end_wall,
            "params": dict(self.params),
            "error": self.error,
        }


class History:
    """An ordered list of events, with the queries the checkers and the report need."""

    def __init__(self, events: Iterable[Event] = (), load_warnings: Iterable[str] = ()) -> None:
        self.events: list[Event] = list(events)
        self.load_warnings: list[str] = list(load_warnings)
        self._pairs: list[OpPair] | None = None
        self._ledgers: dict[str, Ledger | None] = {}  # probe name -> parsed once (checkers ask many times)

    # -- building / files

    def append(self, event: Event) -> None:
        self.events.append(event)
        self._pairs = None
        self._ledgers = {}

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def loads(cls, text: str, source: str = "<string>") -> History:
        return cls._from_lines(text.splitlines(), source)

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a JSONL history. A torn or unreadable line is skipped and reported in ``load_warnings``."""
        with open(path, encoding="utf-8", errors="replace") as fh:
            return cls._from_lines(fh, str(path))

    @classmethod
    def _from_lines(cls, lines: Iterable[str], source: str) -> History:
        events: list[Event] = []
        warnings: list[str] = []
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError(f"a {type(data).__name__}, not an event object")
                events.append(event_from_dict(data))
            except (ValueError, TypeError, AttributeError) as exc:
                warnings.append(f"{source}:{lineno}: skipped ({exc})")
        return cls(events, warnings)

    def dumps(self) -> str:
        return "".join(dumps_event(e) + "\n" for e in self.events)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")

    # -- typed views

    @property
    def meta(self) -> Meta | None:
        for e in self.events:
            if isinstance(e, Meta):
                return e
        return None

    @property
    def started_wall(self) -> float | None:
        """Epoch time the run started: from meta, else the earliest recorded wall time."""
        meta = self.meta
        if meta is not None and meta.started_wall:
            return meta.started_wall
        walls = [e.wall for e in self.events if isinstance(e, (Op, Fault, Probe))]
        return min(walls) if walls else None

    @property
    def ops(self) -> list[Op]:
        return [e for e in self.events if isinstance(e, Op)]

    @property
    def faults(self) -> list[Fault]:
        return [e for e in self.events if isinstance(e, Fault)]

    @property
    def probes(self) -> list[Probe]:
        return [e for e in self.events if isinstance(e, Probe)]

    @property
    def notes(self) -> list[Note]:
        return [e for e in self.events if isinstance(e, Note)]

    def invocations(self, f: str | None = None) -> list[Op]:
        return [o for o in self.ops if o.phase == "invoke" and (f is None or o.f == f)]

    def completions(self, f: str | None = None, phase: str | None = None) -> list[Op]:
        return [
            o
            for o in self.ops
            if o.phase in COMPLETION_PHASES
            and (f is None or o.f == f)
            and (phase is None or o.phase == phase)
        ]

    def pairs(self, f: str | None = None) -> list[OpPair]:
        """Each invocation with the next completion of the same process, in invocation order."""
        if self._pairs is None:
            self._pairs = _pair_ops(self.ops)
        if f is None:
            return list(self._pairs)
        return [p for p in self._pairs if p.f == f]

    def ops_by_task(self) -> dict[str, list[OpPair]]:
        """Requests grouped by the task they concern (submits under the id they were given), invocation order."""
        grouped: dict[str, list[OpPair]] = {}
        for p in self.pairs():
            tid = p.task_id
            if tid is not None:
                grouped.setdefault(tid, []).append(p)
        return grouped

    def fault_windows(self) -> list[FaultWindow]:
        """Fault start/end matched by ``fault_id``; a start without end stays open to the end of the history."""
        starts: dict[str, Fault] = {}
        ends: dict[str, Fault] = {}
        for fault in self.faults:
            if fault.phase == "start":
                starts.setdefault(fault.fault_id, fault)
            elif fault.phase == "end":
                ends.setdefault(fault.fault_id, fault)
        windows = []
        for fid, s in starts.items():
            e = ends.get(fid)
            windows.append(
                FaultWindow(
                    fault_id=fid,
                    name=s.name,
                    node=s.node,
                    start=s.time,
                    end=None if e is None else e.time,
                    start_wall=s.wall,
                    end_wall=None if e is None else e.wall,
                    params=dict(s.params),
                    error=s.error or (e.error if e is not None else None),
                )
            )
        return sorted(windows, key=lambda w: w.start)

    def in_fault(self, start: float, end: float | None = None, grace: float = 0.0) -> bool:
        """Does [start, end] (monotonic seconds) overlap any fault window extended by ``grace``?"""
        stop = start if end is None else end
        return any(w.overlaps(start, stop, grace) for w in self.fault_windows())

    def probe(self, name: str) -> Probe | None:
        """The last probe of that name (later reads supersede earlier ones)."""
        found = None
        for p in self.probes:
            if p.name == name:
                found = p
        return found

    def _ledger_of(self, name: str) -> Ledger | None:
        if name not in self._ledgers:
            self._ledgers[name] = self._parse_ledger(name)
        return self._ledgers[name]

    def _parse_ledger(self, name: str) -> Ledger | None:
        probe = self.probe(name)
        if probe is None or not isinstance(probe.value, Mapping):
            return None
        try:
            return Ledger.from_dict(probe.value)
        except (TypeError, ValueError, AttributeError):
            return None

    def ledger(self) -> Ledger | None:
        """The target's ledger, or None when the target has no probe (checkers then say unknown)."""
        return self._ledger_of(LEDGER_PROBE)

    def locations(self) -> dict[str, dict[str, Any]]:
        """task id -> {"first": location, "second": location} from the broker inspector (empty without it)."""
        probe = self.probe(BROKER_PROBE)
        return dict(probe.value) if probe is not None and isinstance(probe.value, Mapping) else {}

    def settled(self) -> dict[str, dict[str, Any]]:
        """task id -> {"where", "detail", "at"} for tasks no longer waited for (``chaos.settle``), over every
        quiesce of the history."""
        return {t: v for p in self.probes if p.name == SETTLED_PROBE and isinstance(p.value, Mapping)
                for t, v in p.value.items()}

    def executions(self) -> Ledger | None:
        """Who ran what, when: the target's ledger where it has one (preferred), else the worker probe's records.

        The probe sees only tasks that reached a worker, so it is never a list of every task (``lost`` and the
        ``missing-from-ledger`` rule keep to :meth:`ledger`), and it sees no effects.
        """
        return self.ledger() or self._ledger_of(EXECUTIONS_PROBE)

    @property
    def executions_source(self) -> str | None:
        """"ledger", "probe" or None: where :meth:`executions` comes from."""
        if self.ledger() is not None:
            return "ledger"
        return "probe" if self.executions() is not None else None

    def problems(self) -> list[str]:
        """Well-formedness issues (a completion with no open invocation, a process invoking twice)."""
        issues: list[str] = []
        open_by_process: dict[int, Op] = {}
        for op in self.ops:
            if op.phase == "invoke":
                if op.process in open_by_process:
                    issues.append(
                        f"op {op.index}: process {op.process} invoked while op "
                        f"{open_by_process[op.process].index} is still open"
                    )
                open_by_process[op.process] = op
            elif op.phase in COMPLETION_PHASES:
                inv = open_by_process.pop(op.process, None)
                if inv is None:
                    issues.append(
                        f"op {op.index}: completion for process {op.process} with no open invocation"
                    )
                elif inv.f != op.f:
                    issues.append(f"op {op.index}: completes a {op.f} but the open invocation is a {inv.f}")
            else:
                issues.append(f"op {op.index}: unknown phase {op.phase!r}")
        return issues


def _pair_ops(ops: Iterable[Op]) -> list[OpPair]:
    pairs: list[OpPair] = []
    open_by_process: dict[int, int] = {}  # process -> index into pairs
    for op in ops:
        if op.phase == "invoke":
            open_by_process[op.process] = len(pairs)
            pairs.append(OpPair(op, None))
        elif op.phase in COMPLETION_PHASES:
            slot = open_by_process.pop(op.process, None)
            if slot is not None:
                pairs[slot] = OpPair(pairs[slot].invoke, op)
    return pairs


# --------------------------------------------------------------------------------------------- recorder


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
    ) -> Op:
        """Record the fate of a request: ok (happened), fail (did not happen) or info (unknown)."""
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
                latency=t - invocation.time,
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
