"""``History``: the ordered events of one run, read from and written to JSONL, with the checkers' queries.

Loading tolerates a torn last line (a crash mid-write): it is skipped and said in ``load_warnings``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from chaos.history.events import (
    BROKER_PROBE,
    COMPLETION_PHASES,
    EXECUTIONS_PROBE,
    LEDGER_PROBE,
    SETTLED_PROBE,
    Event,
    Fault,
    Meta,
    Note,
    Op,
    Probe,
    dumps_event,
    event_from_dict,
)
from chaos.history.ledger import Ledger
from chaos.history.views import FaultWindow, OpPair, pair_ops


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
            self._pairs = pair_ops(self.ops)
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
