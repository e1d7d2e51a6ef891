"""Per-task views derived from a history: the shared vocabulary of the checkers and the report's timeline.

A task is known to the client when a submit returned its id (possibly several times: idempotent resubmits).
Its *final state* is what the last successful ``drain`` read said, else the ledger's state, else unknown: the
drain is what a client finally sees, the ledger is the fallback ground truth when no drain happened.

Ledger tasks the client was never told about are *attributed* here, once, so that ``lost`` (they must
complete) and ``unexpected`` (they must be explained) agree on which submit explains which task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chaos.checkers.config import CheckConfig
from chaos.history import NOT_FOUND, Execution, FaultWindow, History, Ledger, LedgerTask, OpPair

READ_FS = ("status", "drain")


@dataclass(frozen=True)
class Observation:
    """A status a client was told, with the request that told it."""

    status: str
    pair: OpPair

    @property
    def time(self) -> float:
        return self.pair.complete_time

    @property
    def wall(self) -> float | None:
        return self.pair.completion.wall if self.pair.completion is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "f": self.pair.f,
            "time": self.time,
            "wall": self.wall,
            "invoke_time": self.pair.invoke_time,
            "index": self.pair.invoke.index,
        }


@dataclass
class TaskLifecycle:
    """Everything known about one task: requests about it, statuses seen, its ledger row."""

    task_id: str
    submits: list[OpPair] = field(default_factory=list)  # submits acknowledged with this id
    reads: list[OpPair] = field(default_factory=list)  # status and drain requests
    cancels: list[OpPair] = field(default_factory=list)
    ledger: LedgerTask | None = None
    probed: LedgerTask | None = None  # the worker probe's executions, when the target has no ledger
    backend_state: str | None = None  # the result backend's final state, found by the broker inspector

    # -- what the client asked for

    @property
    def acknowledged(self) -> bool:
        return bool(self.submits)

    @property
    def first_submit(self) -> OpPair | None:
        return min(self.submits, key=lambda p: p.invoke_time) if self.submits else None

    @property
    def first_ack(self) -> OpPair | None:
        return min(self.submits, key=lambda p: p.complete_time) if self.submits else None

    @property
    def acknowledged_time(self) -> float | None:
        ack = self.first_ack
        return ack.complete_time if ack is not None else None

    def _invoke_value(self, key: str) -> Any:
        for p in sorted(self.submits, key=lambda p: p.invoke_time):
            if p.invoke.value and p.invoke.value.get(key) is not None:
                return p.invoke.value[key]
        return None

    @property
    def expect(self) -> str | None:
        value = self._invoke_value("expect")
        return None if value is None else str(value)

    @property
    def kind(self) -> str | None:
        value = self._invoke_value("kind")
        return None if value is None else str(value)

    @property
    def mode(self) -> str | None:
        """How the service accepted it (submit ok ``mode``), else what the ledger says."""
        for p in sorted(self.submits, key=lambda p: p.complete_time):
            if p.value and p.value.get("mode"):
                return str(p.value["mode"])
        return self.ledger.mode if self.ledger is not None else None

    # -- what the client was told

    @property
    def observations(self) -> list[Observation]:
        """Statuses told by ok submits, status reads and drains, in completion order."""
        pairs = [*self.submits, *self.reads]
        obs = [Observation(p.status, p) for p in pairs if p.phase == "ok" and p.status is not None]
        return sorted(obs, key=lambda o: (o.time, o.pair.invoke.index))

    @property
    def drain(self) -> OpPair | None:
        """The last successful final read."""
        drains = [p for p in self.reads if p.f == "drain" and p.phase == "ok" and p.status is not None]
        return max(drains, key=lambda p: p.complete_time) if drains else None

    @property
    def final_state(self) -> str | None:
        """The last drain read, else the target's ledger, else what Celery's result backend held at the end
        (read by the broker inspector when every read of the task failed)."""
        drain = self.drain
        if drain is not None:
            return drain.status
        if self.ledger is not None:
            return self.ledger.state
        return self.backend_state

    @property
    def final_source(self) -> str | None:
        if self.drain is not None:
            return "drain"
        if self.ledger is not None:
            return "ledger"
        return "result backend" if self.backend_state is not None else None

    def not_found_reads(self, after: float | None = None) -> list[OpPair]:
        """Reads that said the task does not exist, sent after ``after`` (monotonic s)."""
        return [
            p
            for p in self.reads
            if p.phase == "ok" and p.status == NOT_FOUND and (after is None or p.invoke_time > after)
        ]

    @property
    def acknowledged_cancels(self) -> list[OpPair]:
        """Cancels the service confirmed as revoking the task (ok with status REVOKED or no status)."""
        return [p for p in self.cancels if p.phase == "ok" and p.status in (None, "REVOKED")]

    @property
    def maybe_cancelled(self) -> bool:
        """A cancel that may have taken effect: ok, or unknown (info). A ``fail`` definitely did not."""
        return any(p.phase in ("ok", "info") for p in self.cancels)

    # -- report

    @property
    def runs(self) -> LedgerTask | None:
        """The row holding its executions: the target's ledger, else the worker probe's records."""
        return self.ledger or self.probed

    def _ok_reads(self) -> list[OpPair]:
        return sorted((p for p in self.reads if p.phase == "ok" and p.status), key=lambda p: p.complete_time)

    @property
    def last_read_status(self) -> str | None:
        """What the last successful status or drain read said."""
        reads = self._ok_reads()
        return reads[-1].status if reads else None

    def terminal_seen_time(self, terminal_states: Iterable[str]) -> float | None:
        """When a read first said the task was terminal (monotonic s), None if none did."""
        terminal = set(terminal_states)
        return next((p.complete_time for p in self._ok_reads() if p.status in terminal), None)

    def summary(self) -> dict[str, Any]:
        """A JSON timeline row: first submit, statuses seen and when, cancels, executions, end state."""
        first = self.first_submit
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "expect": self.expect,
            "mode": self.mode,
            "acknowledged": self.acknowledged,
            "submits": len(self.submits),
            "first_submit_time": first.invoke_time if first else None,
            "first_submit_wall": first.invoke.wall if first else None,
            "acknowledged_time": self.acknowledged_time,
            "statuses": [o.to_dict() for o in self.observations],
            "cancels": [
                {"phase": p.phase, "status": p.status, "time": p.invoke_time, "wall": p.invoke.wall}
                for p in self.cancels
            ],
            "final_state": self.final_state,
            "final_source": self.final_source,
            "ledger_state": self.ledger.state if self.ledger else None,
            "effects": self.ledger.effects if self.ledger else None,
            "expected_effects": self.ledger.expected_effects if self.ledger else None,
            "executions": [e.to_dict() for e in runs.executions] if (runs := self.runs) else [],
            "executions_source": "ledger" if self.ledger else ("probe" if self.probed else None),
        }


def task_lifecycles(history: History, ledger: Ledger | None = None) -> dict[str, TaskLifecycle]:
    """One lifecycle per task id seen in ops or in the ledger, in order of first appearance."""
    if ledger is None:
        ledger = history.ledger()
    tasks: dict[str, TaskLifecycle] = {}

    def get(tid: str) -> TaskLifecycle:
        if tid not in tasks:
            tasks[tid] = TaskLifecycle(tid)
        return tasks[tid]

    for p in history.pairs():
        tid = p.task_id
        if tid is None:
            continue
        if p.f == "submit":
            if p.phase == "ok":
                get(tid).submits.append(p)
        elif p.f in READ_FS:
            get(tid).reads.append(p)
        elif p.f == "cancel":
            get(tid).cancels.append(p)
    for tid, seen in history.locations().items():
        last = (seen or {}).get("second") or {}
        if tid in tasks and last.get("where") == "finished" and last.get("state"):
            tasks[tid].backend_state = str(last["state"])
    if ledger is not None:
        for row in ledger.tasks:
            get(row.task_id).ledger = row
    elif history.executions_source == "probe":
        probed = history.executions()
        assert probed is not None
        for row in probed.tasks:
            if row.task_id in tasks:  # only tasks of this run's requests (a leftover of another run is not ours)
                tasks[row.task_id].probed = row
    return tasks


def node_runs_worker(node: str, worker: str) -> bool:
    """Does fault target ``node`` (``worker-0``) host ledger worker ``worker`` (``celery@worker-0``)?"""
    return node == worker or node in worker.split("@")


# Faults that end processes (SIGKILL, cold/warm shutdown, restart, scale-down). Pauses and network faults do not:
# an execution on a paused or cut-off worker is still alive, and a second one beside it is a real duplicate.
PROCESS_ENDING = ("kill", "crash", "quit", "term", "restart", "stop", "scale")


def process_ending_faults(history: History) -> list[FaultWindow]:
    return [w for w in history.fault_windows() if any(word in w.name for word in PROCESS_ENDING)]


def effective_end(execution: Execution, kills: list[FaultWindow]) -> float | None:
    """When the execution stopped: its finish, else the process-ending fault of its worker that was open when
    it started or came after (a kill lands some milliseconds after its window opens), else None."""
    if execution.finished_at is not None:
        return execution.finished_at
    ends = [
        max(w.start_wall, execution.started_at)
        for w in kills
        if node_runs_worker(w.node, execution.worker)
        and (w.end_wall is None or w.end_wall >= execution.started_at)
    ]
    return min(ends) if ends else None


def acknowledged(lifecycles: dict[str, TaskLifecycle]) -> list[TaskLifecycle]:
    return [t for t in lifecycles.values() if t.acknowledged]


def unresolved_submits(history: History) -> list[OpPair]:
    """Submits with no id to show for them: fail, info, or never completed."""
    return [p for p in history.pairs("submit") if not (p.phase == "ok" and p.task_id)]


def idempotency_key(pair: OpPair) -> str | None:
    value = pair.invoke.value or {}
    key = value.get("idempotency_key")
    return None if key is None else str(key)


@dataclass
class Attribution:
    """Where each ledger task the client was never given came from.

    ``by_key``: its id is the idempotency key of an unknown-fate (info) submit: that submit happened.
    ``by_time``: charged to one info submit sent before it was created (each info submit explains one task).
    ``after_failed_submit``: its id is the key of submits that all *failed*; it should not exist.
    ``unexplained``: created during the run with an id nobody asked for.
    ``pre_existing``: created before the run started; none of our business.
    ``known``: ids the client used in requests (status, cancel) without a submit ack; not judged.
    """

    by_key: dict[str, list[OpPair]] = field(default_factory=dict)
    by_time: dict[str, OpPair] = field(default_factory=dict)
    after_failed_submit: dict[str, list[OpPair]] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)
    pre_existing: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)

    @property
    def from_unknown_submits(self) -> list[str]:
        """Ledger tasks an info submit created: they happened, so they must complete like acknowledged ones."""
        return [*self.by_key, *self.by_time]


def attribute_unacknowledged(
    history: History, lifecycles: dict[str, TaskLifecycle], config: CheckConfig
) -> Attribution:
    """Explain ledger tasks without a submit ack by the submits whose fate the client does not know."""
    result = Attribution()
    started = history.started_wall
    submits = unresolved_submits(history)
    acked_keys = {k for t in lifecycles.values() for p in t.submits if (k := idempotency_key(p)) is not None}
    by_key: dict[str, list[OpPair]] = {}
    for p in submits:
        key = idempotency_key(p)
        if key is not None:
            by_key.setdefault(key, []).append(p)

    pending: list[LedgerTask] = []
    for t in lifecycles.values():
        row = t.ledger
        if row is None or t.acknowledged:
            continue
        if started is not None and row.created_at < started - config.clock_skew_s:
            result.pre_existing.append(row.task_id)
            continue
        keyed = by_key.get(row.task_id)
        if keyed:
            maybe = [p for p in keyed if p.phase == "info"]
            if maybe:
                result.by_key[row.task_id] = maybe
            else:
                result.after_failed_submit[row.task_id] = keyed
            continue
        if t.reads or t.cancels or row.task_id in acked_keys:
            result.known.append(row.task_id)
            continue
        pending.append(row)

    # Greedy in creation order: an info submit may have taken effect any time after it was sent, so any
    # still-free submit sent before the task was created can explain it, and which one does not matter.
    used_keys = set(result.by_key) | acked_keys
    pool = sorted(
        (
            p
            for p in submits
            if p.phase == "info" and (idempotency_key(p) is None or idempotency_key(p) not in used_keys)
        ),
        key=lambda p: p.invoke.wall,
    )
    next_free = 0
    for row in sorted(pending, key=lambda r: r.created_at):
        if next_free < len(pool) and pool[next_free].invoke.wall <= row.created_at + config.clock_skew_s:
            result.by_time[row.task_id] = pool[next_free]
            next_free += 1
        else:
            result.unexplained.append(row.task_id)
    return result


def op_evidence(pairs: Iterable[OpPair], limit: int = 20) -> list[dict[str, Any]]:
    """Requests as JSON evidence (invocation + completion), at most ``limit``."""
    out = []
    for i, p in enumerate(pairs):
        if i >= limit:
            break
        out.append(p.to_dict())
    return out


def timeline(history: History) -> list[dict[str, Any]]:
    """Every task's lifecycle summary, ordered by first submit (ledger-only tasks last, by creation)."""
    rows = [t.summary() for t in task_lifecycles(history).values()]

    def order(row: dict[str, Any]) -> tuple[int, float]:
        if row["first_submit_time"] is not None:
            return (0, row["first_submit_time"])
        return (1, 0.0)

    return sorted(rows, key=order)
