"""The events of a history, one JSON line each: ``meta`` first, then ``op``, ``fault``, ``probe`` and ``note``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from chaos.history.records import Record

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
WORKER_LOG_PROBE = "worker-logs"  # what each worker's log says about giving up during the run (chaos.runner)


@dataclass
class Meta(Record):
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


@dataclass
class Op(Record):
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


@dataclass
class Fault(Record):
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


@dataclass
class Probe(Record):
    """Ground truth read from the target (``name == "ledger"``: the ledger JSON, see :class:`Ledger`)."""

    type: ClassVar[str] = "probe"
    index: int
    name: str
    time: float
    wall: float
    value: Any = None


@dataclass
class Note(Record):
    """Free-form commentary (phase changes of the scenario, warnings); never judged."""

    type: ClassVar[str] = "note"
    index: int
    message: str
    time: float = 0.0
    wall: float = 0.0
    data: dict[str, Any] | None = None


Event = Meta | Op | Fault | Probe | Note
_EVENT_TYPES: dict[str, type] = {cls.type: cls for cls in (Meta, Op, Fault, Probe, Note)}




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
