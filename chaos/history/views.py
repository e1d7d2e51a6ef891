"""Views derived from the events: a request as its invocation and completion, a fault as a time window."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos.history.events import COMPLETION_PHASES, Op
from chaos.history.records import Record


@dataclass(frozen=True)
class OpPair(Record):
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


@dataclass(frozen=True)
class FaultWindow(Record):
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


def pair_ops(ops: Iterable[Op]) -> list[OpPair]:
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
