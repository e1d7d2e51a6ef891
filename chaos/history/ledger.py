"""The target's ground truth: who ran what, when, with which effects (a ``probe`` event's value)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.history.records import Record


@dataclass
class Execution(Record):
    """One run of a task body on a worker, as the target recorded it."""

    attempt: int
    worker: str
    pid: int
    started_at: float
    finished_at: float | None = None
    outcome: str | None = None  # success | failure | revoked | fenced | None (never finished)


@dataclass
class LedgerTask(Record):
    """The target's own record of one task: its state, its side effects and every execution."""

    task_id: str
    state: str
    mode: str = "celery"
    expected_effects: int = 1
    effects: int = 0
    revoked_at: float | None = None
    created_at: float = 0.0
    executions: list[Execution] = field(default_factory=list)


@dataclass
class Ledger(Record):
    """Ground truth read from the target at the end of a run (times are epoch seconds, like ``Op.wall``)."""

    tasks: list[LedgerTask] = field(default_factory=list)

    def by_id(self) -> dict[str, LedgerTask]:
        return {t.task_id: t for t in self.tasks}

