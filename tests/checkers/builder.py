"""A compact way to write synthetic histories for checker tests.

Times are monotonic seconds since the run started (``at=``); wall times are ``W0 + at``, and ledger times are
given with :func:`wall`. Each request gets its own client process unless one is given, so requests may be
written in any order; :meth:`HistoryBuilder.build` sorts events by time like a recorder would.
"""

from __future__ import annotations

from typing import Any

from chaos.history import Event, Fault, History, Meta, Op, Probe

W0 = 1_700_000_000.0


def wall(t: float) -> float:
    return W0 + t


def execution(
    started: float,
    finished: float | None,
    outcome: str | None = "success",
    worker: str = "celery@worker-0",
    attempt: int = 1,
    pid: int = 100,
) -> dict[str, Any]:
    """A ledger execution; ``started``/``finished`` are run-relative seconds (converted to epoch)."""
    return {
        "attempt": attempt,
        "worker": worker,
        "pid": pid,
        "started_at": wall(started),
        "finished_at": None if finished is None else wall(finished),
        "outcome": outcome,
    }


def ledger_task(
    task_id: str,
    state: str = "SUCCESS",
    *,
    created: float = 0.0,
    effects: int = 1,
    expected_effects: int = 1,
    mode: str = "celery",
    revoked_at: float | None = None,
    executions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if executions is None:
        executions = [execution(created + 0.1, created + 0.2, "success")] if state == "SUCCESS" else []
    return {
        "task_id": task_id,
        "state": state,
        "mode": mode,
        "expected_effects": expected_effects,
        "effects": effects,
        "revoked_at": None if revoked_at is None else wall(revoked_at),
        "created_at": wall(created),
        "executions": executions,
    }


class HistoryBuilder:
    def __init__(self, scenario: str = "synthetic") -> None:
        self.events: list[tuple[float, int, Event]] = []
        self.meta = Meta(scenario=scenario, seed=1, target="test", started_wall=W0)
        self._process = 0
        self._seq = 0
        self._faults = 0

    def _add(self, t: float, event: Event) -> None:
        self._seq += 1
        self.events.append((t, self._seq, event))

    def op(
        self,
        f: str,
        *,
        at: float,
        latency: float | None = 0.01,
        phase: str = "ok",
        task_id: str | None = None,
        invoke_value: dict[str, Any] | None = None,
        value: dict[str, Any] | None = None,
        result_task_id: str | None = None,
        error: str | None = None,
        process: int | None = None,
    ) -> HistoryBuilder:
        """An invocation at ``at`` and its completion ``latency`` later (``latency=None``: never completed)."""
        if process is None:
            self._process += 1
            process = self._process
        self._add(at, Op(0, process, f, "invoke", at, wall(at), task_id, invoke_value))
        if latency is not None:
            end = at + latency
            self._add(
                end,
                Op(0, process, f, phase, end, wall(end), result_task_id or task_id, value, error, latency),
            )
        return self

    def submit(
        self,
        task_id: str | None,
        *,
        at: float = 0.0,
        latency: float | None = 0.01,
        phase: str = "ok",
        expect: str = "SUCCESS",
        mode: str = "celery",
        status: str = "PENDING",
        key: str | None = None,
        kind: str = "add",
        error: str | None = None,
        process: int | None = None,
    ) -> HistoryBuilder:
        ok = phase == "ok"
        if not ok and error is None:
            error = "timeout" if phase == "info" else "503 Service Unavailable"
        return self.op(
            "submit",
            at=at,
            latency=latency,
            phase=phase,
            process=process,
            error=error,
            invoke_value={"kind": kind, "priority": 0, "expect": expect, "idempotency_key": key},
            value={"task_id": task_id, "status": status, "mode": mode} if ok else None,
            result_task_id=task_id if ok else None,
        )

    def status(
        self,
        task_id: str,
        status: str,
        *,
        at: float,
        latency: float = 0.01,
        phase: str = "ok",
        process: int | None = None,
    ) -> HistoryBuilder:
        value = {"status": status, "mode": "celery", "attempts": 1} if phase == "ok" else None
        return self.op(
            "status", at=at, latency=latency, phase=phase, task_id=task_id, value=value, process=process
        )

    def drain(self, task_id: str, status: str, *, at: float = 100.0, phase: str = "ok") -> HistoryBuilder:
        value = {"status": status} if phase == "ok" else None
        return self.op("drain", at=at, phase=phase, task_id=task_id, value=value)

    def cancel(
        self,
        task_id: str,
        *,
        at: float,
        latency: float = 0.01,
        phase: str = "ok",
        status_code: int | None = None,
    ) -> HistoryBuilder:
        if phase == "ok":
            value: dict[str, Any] | None = {"status": "REVOKED"}
        elif status_code is not None:
            value = {"status_code": status_code}
        else:
            value = None
        return self.op("cancel", at=at, latency=latency, phase=phase, task_id=task_id, value=value)

    def fault(
        self,
        name: str,
        node: str,
        start: float,
        end: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> HistoryBuilder:
        self._faults += 1
        fid = f"{name}#{self._faults}"
        self._add(start, Fault(0, fid, name, node, "start", start, wall(start), dict(params or {})))
        if end is not None:
            self._add(end, Fault(0, fid, name, node, "end", end, wall(end), dict(params or {})))
        return self

    def ledger(self, *tasks: dict[str, Any], at: float = 200.0) -> HistoryBuilder:
        self._add(at, Probe(0, "ledger", at, wall(at), {"tasks": list(tasks)}))
        return self

    def worker_logs(self, at: float = 200.0, **workers: dict[str, Any]) -> HistoryBuilder:
        """The worker-logs probe: worker name -> {"alive", "fatal" lines, "times", "restarted"}."""
        self._add(at, Probe(0, "worker-logs", at, wall(at), dict(workers)))
        return self

    def task(
        self,
        task_id: str,
        *,
        at: float = 0.0,
        final: str = "SUCCESS",
        expect: str = "SUCCESS",
        mode: str = "celery",
    ) -> HistoryBuilder:
        """A well-behaved task: submit, a STARTED read, the final state read, drained."""
        self.submit(task_id, at=at, expect=expect, mode=mode)
        self.status(task_id, "STARTED", at=at + 1)
        self.status(task_id, final, at=at + 2)
        self.drain(task_id, final)
        return self

    def build(self) -> History:
        ordered = [e for _, _, e in sorted(self.events, key=lambda x: (x[0], x[1]))]
        for i, event in enumerate(ordered):
            event.index = i  # type: ignore[union-attr]
        return History([self.meta, *ordered])


def clean(n: int = 3, *, ledger: bool = True, mode: str = "celery") -> HistoryBuilder:
    """n tasks that all behave, with a matching ledger."""
    b = HistoryBuilder()
    rows = []
    for i in range(n):
        tid = f"t{i}"
        b.task(tid, at=float(i), mode=mode)
        rows.append(ledger_task(tid, created=float(i), mode=mode))
    if ledger:
        b.ledger(*rows)
    return b
