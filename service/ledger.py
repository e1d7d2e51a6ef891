"""The task ledger: every state transition is one conditional UPDATE.

This module is the whole correctness story:

* ``claim`` is the fence.  An attempt may start only if the task is
  PENDING/RETRY (or STARTED with an expired lease); it bumps ``attempts`` and
  records an ``executions`` row in the same transaction.  A delivery that
  fails to claim is simply acknowledged and ignored.
* ``finish_*`` commit the final state *and* the effects in one transaction,
  conditional on ``attempts == my_attempt AND status == 'STARTED'``.
* Terminal states (SUCCESS/FAILURE/REVOKED) are never left: every UPDATE
  carries a status predicate that excludes them.
"""
from __future__ import annotations

import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .config import get_settings
from .db import (
    WouldWait,
    executions,
    files,
    hot_read,
    hot_tx,
    insert_sql,
    locks,
    read_conn,
    retry_db,
    sync_effects,
    sync_effects_log,
    synced_rows,
    tasks,
    workers,
    write_tx,
    write_tx_nowait,
)
from .raw_sqlite import hot

PENDING, STARTED, RETRY = "PENDING", "STARTED", "RETRY"
SUCCESS, FAILURE, REVOKED = "SUCCESS", "FAILURE", "REVOKED"
TERMINAL = (SUCCESS, FAILURE, REVOKED)
ALL_STATES = (PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED)
CELERY, FALLBACK = "celery", "fallback"


def _row(r: Any) -> dict[str, Any] | None:
    return dict(r._mapping) if r is not None else None


# ---------------------------------------------------------------- API side
CREATED, REPLAYED, KEY_CONFLICT = "created", "replayed", "conflict"


_INSERT_TASK = insert(tasks)


def create_task(caller: str, file_id: int, priority: int, idem_key: str | None) -> tuple[dict, str]:
    """Insert a PENDING celery-mode task -> (row, CREATED).

    With an idempotency key the caller already used: the same request (file_id and priority, the whole
    validated body) -> (existing row, REPLAYED), its ``requested_at`` bumped so the ledger's ``since`` sees the
    replay; a different request -> (existing row, KEY_CONFLICT) and the existing task is left untouched."""
    def go() -> tuple[dict, str]:
        values = _new_task(caller, file_id, priority, idem_key)
        try:
            with write_tx() as c:
                c.execute(_INSERT_TASK, values)  # one statement object: its compiled form is cached
            return values, CREATED
        except IntegrityError:
            if idem_key is None:
                raise
            mine = and_(tasks.c.caller == caller, tasks.c.idempotency_key == idem_key)
            with write_tx() as c:
                existing = _row(c.execute(select(tasks).where(mine)).first())
                if existing is None:  # pragma: no cover - unique violation on the uuid itself?!
                    raise
                if (existing["file_id"], existing["priority"]) != (file_id, priority):
                    return existing, KEY_CONFLICT
                c.execute(update(tasks).where(mine).values(requested_at=time.time()))
            return existing, REPLAYED
    return retry_db(go)


NEW_TASK_COLUMNS = ("task_id", "caller", "file_id", "priority", "status", "mode", "attempts", "dispatched_at",
                    "idempotency_key", "created_at", "updated_at")
_INSERT_TASK_NOW = insert_sql(tasks, NEW_TASK_COLUMNS)


def _new_task(caller: str, file_id: int, priority: int, idem_key: str | None) -> dict[str, Any]:
    now = time.time()
    return dict(zip(NEW_TASK_COLUMNS, (str(uuid.uuid4()), caller, file_id, priority, PENDING, CELERY, 0, now,
                                       idem_key, now, now), strict=True))


def create_tasks(requests: Sequence[tuple[str, int, int, str | None]]) -> list[tuple[dict, str] | Exception]:
    """``create_task`` for many submits (caller, file_id, priority, key) in one transaction: the group commit's
    write. When a key was used before (or twice in the batch), the batch is undone and each request goes through
    ``create_task`` on its own, so every caller gets exactly the answer a lone submit would."""
    rows = [_new_task(*r) for r in requests]

    def go() -> list[tuple[dict, str] | Exception]:
        with write_tx() as c:
            c.execute(_INSERT_TASK, rows)  # one multi-row INSERT
        return [(row, CREATED) for row in rows]

    try:
        return retry_db(go)
    except IntegrityError:
        if not any(r[3] is not None for r in requests):
            raise
    out: list[tuple[dict, str] | Exception] = []
    for r in requests:
        try:
            out.append(create_task(*r))
        except Exception as exc:  # noqa: BLE001 - this caller's own error
            out.append(exc)
    return out


def create_tasks_now(requests: Sequence[tuple[str, int, int, str | None]]) -> list[tuple[dict, str]] | None:
    """``create_tasks`` on the calling thread without waiting: None, having written nothing, when it would wait
    for a lock or when a key was used before (``create_tasks`` then answers, off the event loop)."""
    rows = [_new_task(*r) for r in requests]
    try:
        with write_tx_nowait() as c:
            c.executemany(_INSERT_TASK_NOW, [tuple(row.values()) for row in rows])
    except (WouldWait, sqlite3.IntegrityError, sqlite3.OperationalError):
        return None
    return [(row, CREATED) for row in rows]


def get_task(task_id: str, caller: str | None = None) -> dict | None:
    def go() -> dict | None:
        q = select(tasks).where(tasks.c.task_id == task_id)
        if caller is not None:
            q = q.where(tasks.c.caller == caller)
        with read_conn() as c:
            return _row(c.execute(q).first())
    return retry_db(go)


def list_tasks(caller: str, status: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    def go() -> tuple[list[dict], int]:
        cond = [tasks.c.caller == caller]
        if status:
            cond.append(tasks.c.status == status)
        with read_conn() as c:
            total = c.execute(select(func.count()).select_from(tasks).where(*cond)).scalar_one()
            rows = c.execute(select(tasks).where(*cond).order_by(tasks.c.created_at.desc(), tasks.c.task_id)
                             .limit(limit).offset(offset)).all()
        return [_row(r) for r in rows], total
    return retry_db(go)


def mark_fallback(task_id: str) -> bool:
    """Publish failed: hand the task to the in-process runner (only if no worker claimed it yet)."""
    def go() -> bool:
        with write_tx() as c:
            r = c.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.mode == CELERY, tasks.c.status.in_((PENDING, RETRY)))
                .values(mode=FALLBACK, updated_at=time.time()))
            return r.rowcount == 1
    return retry_db(go)


def adopt_into_fallback(task_id: str) -> bool:
    """Broker down for long: take a stale celery task into fallback mode (fenced like any claim)."""
    return mark_fallback(task_id)


def mark_dispatched(task_ids: list[str]) -> None:
    if not task_ids:
        return
    def go() -> None:
        with write_tx() as c:
            c.execute(update(tasks).where(tasks.c.task_id.in_(task_ids), tasks.c.status.in_((PENDING, RETRY)))
                      .values(dispatched_at=time.time()))
    retry_db(go)


def cancel(task_id: str, caller: str) -> tuple[str, dict | None]:
    """-> ("revoked"|"already"|"conflict"|"missing", row).  Durable: it's a DB write, not a broker message.

    With ``DURABLE_REVOKE=off`` (a canary knob) nothing is written: the caller only sends Celery's in-memory
    ``control.revoke`` and the DB follows Celery's ``task_revoked`` signal."""
    if not get_settings().durable_revoke:
        row = get_task(task_id, caller)
        if row is None:
            return "missing", None
        if row["status"] in TERMINAL:
            return ("already" if row["status"] == REVOKED else "conflict"), row
        return "revoked", row

    def go() -> tuple[str, dict | None]:
        now = time.time()
        with write_tx() as c:
            r = c.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.caller == caller, tasks.c.status.notin_(TERMINAL))
                .values(status=REVOKED, revoked_at=now, updated_at=now, lease_until=None))
            row = _row(c.execute(select(tasks).where(tasks.c.task_id == task_id, tasks.c.caller == caller)).first())
        if r.rowcount == 1:
            return "revoked", row
        if row is None:
            return "missing", None
        return ("already" if row["status"] == REVOKED else "conflict"), row
    return retry_db(go)


# ------------------------------------------------------------- worker side
# The worker's hot path runs statements built once, with bound parameters: building an expression and its cache
# key on every call was most of a short task's CPU (0.8 ms of a 1.2 ms claim on its own).
@functools.cache
def _claim_stmt(fenced: bool) -> Any:
    if fenced:
        claimable = or_(tasks.c.status == PENDING, tasks.c.status == RETRY,
                        and_(tasks.c.status == STARTED, tasks.c.lease_until < bindparam("b_now")))
    else:  # CLAIM_FENCING=off (canary): every delivery starts a new attempt, even beside a live one
        claimable = and_(*(tasks.c.status != t for t in TERMINAL))  # not IN: raw execution (raw_sqlite.py)
    return hot(update(tasks)
               .where(tasks.c.task_id == bindparam("b_tid"), tasks.c.mode == bindparam("b_mode"), claimable)
               .values(status=STARTED, attempts=tasks.c.attempts + 1, lease_until=bindparam("b_lease"),
                       updated_at=bindparam("b_now")).returning(tasks.c.attempts, tasks.c.file_id))


_INSERT_EXECUTION = hot(insert(executions))
_STATE_OF = hot(select(tasks.c.status, tasks.c.attempts).where(tasks.c.task_id == bindparam("b_tid")))
_RENEW = hot(update(tasks).where(tasks.c.task_id == bindparam("b_tid"), tasks.c.attempts == bindparam("b_att"),
                                 tasks.c.status == STARTED).values(lease_until=bindparam("b_lease")))
_SET_OUTCOME = hot(update(executions).where(executions.c.task_id == bindparam("b_tid"),
                                            executions.c.attempt == bindparam("b_att"), executions.c.outcome.is_(None))
                   .values(outcome=bindparam("b_out"), finished_at=bindparam("b_fin")))


def claim(task_id: str, worker: str, pid: int, mode: str) -> tuple[int, int] | None:
    """Try to start an attempt.  Returns (attempt, file_id) or None (fenced: ack and ignore)."""
    s = get_settings()

    def go() -> tuple[int, int] | None:
        now = time.time()
        with hot_tx() as c:
            claimed = c.execute(_claim_stmt(s.claim_fencing), {
                "b_tid": task_id, "b_mode": mode, "b_now": now, "b_lease": now + s.lease_seconds}).first()
            if claimed is None:
                return None
            attempt, file_id = claimed
            if attempt > s.max_attempts:
                c.execute(update(tasks).where(tasks.c.task_id == task_id).values(
                    status=FAILURE, lease_until=None, updated_at=now,
                    error=f"gave up: {attempt - 1} attempts started and none finished (max_attempts={s.max_attempts})"))
                return None
            c.execute(_INSERT_EXECUTION, {"task_id": task_id, "attempt": attempt, "worker": worker, "pid": pid,
                                          "started_at": now, "finished_at": None, "outcome": None})
            return attempt, file_id
    return retry_db(go)


def check(task_id: str, attempt: int, renew: bool) -> str:
    """Per-row probe: "ok", "revoked" or "fenced"; optionally renews the lease (conditional)."""
    if not get_settings().claim_fencing:
        return _check_unfenced(task_id, renew)

    def go() -> str:
        if renew:
            with hot_tx() as c:
                r = c.execute(_RENEW, {"b_tid": task_id, "b_att": attempt,
                                       "b_lease": time.time() + get_settings().lease_seconds})
                if r.rowcount == 1:
                    return "ok"
                return _fenced_outcome(c, task_id, attempt)
        with hot_read() as c:
            row = c.execute(_STATE_OF, {"b_tid": task_id}).first()
        if row is not None and row.status == STARTED and row.attempts == attempt:
            return "ok"
        return "revoked" if row is not None and row.status == REVOKED and row.attempts == attempt else "fenced"
    return retry_db(go)


def _check_unfenced(task_id: str, renew: bool) -> str:
    """CLAIM_FENCING=off: an attempt never learns it was superseded; only a cancel stops it."""
    def go() -> str:
        with write_tx() if renew else read_conn() as c:
            if renew:
                c.execute(update(tasks).where(tasks.c.task_id == task_id, tasks.c.status == STARTED)
                          .values(lease_until=time.time() + get_settings().lease_seconds))
            row = c.execute(select(tasks.c.status).where(tasks.c.task_id == task_id)).first()
        return "revoked" if row is not None and row.status == REVOKED else "ok"
    return retry_db(go)


def record_row_effect(task_id: str, attempt: int, file_id: int, row_no: int, data: str) -> None:
    """EFFECTS_MODE=per-row (canary): this row's effect, committed at once (no unique constraint)."""
    def go() -> None:
        now = time.time()
        with write_tx() as c:
            _upsert_synced(c, [dict(file_id=file_id, row_no=row_no, data=data, task_id=task_id, synced_at=now)])
            c.execute(insert(sync_effects_log).values(task_id=task_id, file_id=file_id, row_no=row_no,
                                                      attempt=attempt, created_at=now))
    retry_db(go)


def _set_outcome(c: Any, task_id: str, attempt: int, outcome: str) -> None:
    c.execute(_SET_OUTCOME, {"b_tid": task_id, "b_att": attempt, "b_out": outcome, "b_fin": time.time()})


def _fenced_outcome(c: Any, task_id: str, attempt: int) -> str:
    """Why an attempt may not go on: "revoked" if *it* was cancelled, else "fenced" (superseded/expired)."""
    row = c.execute(_STATE_OF, {"b_tid": task_id}).first()
    return "revoked" if row is not None and row.status == REVOKED and row.attempts == attempt else "fenced"


@functools.cache
def _upsert_synced_stmt(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(synced_rows)
    return hot(stmt.on_conflict_do_update(
        index_elements=[synced_rows.c.file_id, synced_rows.c.row_no],
        set_={"data": stmt.excluded.data, "task_id": stmt.excluded.task_id, "synced_at": stmt.excluded.synced_at}))


@functools.cache
def _finish_stmt(fenced: bool) -> Any:
    mine = (and_(tasks.c.attempts == bindparam("b_att"), tasks.c.status == STARTED) if fenced
            else and_(tasks.c.status != REVOKED, tasks.c.status != FAILURE))
    return hot(update(tasks).where(tasks.c.task_id == bindparam("b_tid"), mine)
               .values(status=SUCCESS, lease_until=None, updated_at=bindparam("b_now"), error=None,
                       result=bindparam("b_res")))


@functools.cache
def _insert_effects_stmt(fenced: bool, dialect: str) -> Any:
    stmt = insert(sync_effects)
    if not fenced and dialect == "sqlite":  # a second unfenced commit must not trip the unique constraint
        stmt = stmt.prefix_with("OR IGNORE")
    return hot(stmt)


def _upsert_synced(c: Any, values: list[dict]) -> None:
    c.execute(_upsert_synced_stmt(c.dialect.name), values)


def finish_success(task_id: str, attempt: int, file_id: int, rows: list[tuple[int, str]]) -> str:
    """Commit effects + SUCCESS atomically (fenced).  Returns the execution outcome.

    Canary knobs: ``EFFECTS_MODE=per-row`` wrote the effects already (``record_row_effect``), so only the state
    is committed here; ``CLAIM_FENCING=off`` commits whatever attempt finishes, unless cancelled or failed."""
    s = get_settings()
    fenced = s.claim_fencing
    per_row = s.effects_mode == "per-row"

    def go() -> str:
        now = time.time()
        with hot_tx() as c:
            result = json.dumps({"rows_synced": len(rows), "file_id": file_id})
            r = c.execute(_finish_stmt(fenced), {"b_tid": task_id, "b_att": attempt, "b_now": now, "b_res": result})
            if r.rowcount != 1:
                outcome = _fenced_outcome(c, task_id, attempt)
                _set_outcome(c, task_id, attempt, outcome)
                return outcome
            if rows and not per_row:
                _upsert_synced(c, [dict(file_id=file_id, row_no=n, data=d, task_id=task_id, synced_at=now)
                                   for n, d in rows])
                c.execute(_insert_effects_stmt(fenced, c.dialect.name),
                          [dict(task_id=task_id, file_id=file_id, row_no=n, created_at=now) for n, _ in rows])
            _set_outcome(c, task_id, attempt, "success")
            return "success"
    return retry_db(go)


def finish_failure(task_id: str, attempt: int, error: str) -> str:
    """A real task error: FAILURE with its reason, no effects, never retried."""
    def go() -> str:
        now = time.time()
        with write_tx() as c:
            r = c.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.attempts == attempt, tasks.c.status == STARTED)
                .values(status=FAILURE, lease_until=None, updated_at=now, error=error[:2000]))
            outcome = "failure" if r.rowcount == 1 else _fenced_outcome(c, task_id, attempt)
            _set_outcome(c, task_id, attempt, outcome)
            return outcome
    return retry_db(go)


def release_for_retry(task_id: str, attempt: int, error: str) -> bool:
    """Transient trouble inside an attempt: STARTED -> RETRY so any runner may claim it again."""
    def go() -> bool:
        now = time.time()
        with write_tx() as c:
            r = c.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.attempts == attempt, tasks.c.status == STARTED)
                .values(status=RETRY, lease_until=None, updated_at=now, error=error[:2000]))
            _set_outcome(c, task_id, attempt, "failure" if r.rowcount == 1 else _fenced_outcome(c, task_id, attempt))
            return r.rowcount == 1
    return retry_db(go)


def record_outcome(task_id: str, attempt: int, outcome: str) -> None:
    def go() -> None:
        with hot_tx() as c:
            _set_outcome(c, task_id, attempt, outcome)
    retry_db(go)


def _close_if_open(task_id: str, status: str, **extra: Any) -> bool:
    """Mirror one of Celery's own terminal verdicts, unless the task already has a terminal state."""
    def go() -> bool:
        now = time.time()
        values = {"status": status, "lease_until": None, "updated_at": now, **extra}
        if status == REVOKED:
            values["revoked_at"] = now
        with write_tx() as c:
            r = c.execute(update(tasks).where(tasks.c.task_id == task_id, tasks.c.status.notin_(TERMINAL))
                          .values(**values))
            return r.rowcount == 1
    return retry_db(go)


def fail_if_open(task_id: str, error: str) -> bool:
    """Celery's own terminal failure verdict (``task_failure``, e.g. WorkerLostError without requeue)."""
    return _close_if_open(task_id, FAILURE, error=error[:2000])


def revoke_if_open(task_id: str) -> bool:
    """Celery discarded a revoked task (``task_revoked``): REVOKED unless already terminal."""
    return _close_if_open(task_id, REVOKED)


def discard_unpublished(task_id: str) -> bool:
    """FALLBACK=off: the publish failed and the client gets a 503, so the task must not exist (a late
    delivery then finds no row and is ignored). False if a worker already claimed it (the publish did land)."""
    def go() -> bool:
        with write_tx() as c:
            r = c.execute(delete(tasks).where(tasks.c.task_id == task_id, tasks.c.status == PENDING,
                                              tasks.c.attempts == 0))
            return r.rowcount == 1
    return retry_db(go)


# ------------------------------------------------------------- sweeper side
def expire_leases(mode: str) -> list[dict]:
    """STARTED tasks whose lease expired -> RETRY (conditional on the attempt we saw). Returns them."""
    def go() -> list[dict]:
        now = time.time()
        with read_conn() as c:
            rows = [_row(r) for r in c.execute(select(tasks.c.task_id, tasks.c.attempts, tasks.c.priority).where(
                tasks.c.status == STARTED, tasks.c.mode == mode, tasks.c.lease_until < now)).all()]
        out = []
        for row in rows:
            with write_tx() as c:
                r = c.execute(update(tasks).where(
                    tasks.c.task_id == row["task_id"], tasks.c.status == STARTED,
                    tasks.c.attempts == row["attempts"], tasks.c.lease_until < now)
                    .values(status=RETRY, lease_until=None, updated_at=now))
            if r.rowcount == 1:
                out.append(row)
        return out
    return retry_db(go)


# (task_id, priority, created_at) of the waiting tasks: the sweeper reads a whole backlog on each look, so in
# no order and as plain rows (SQLAlchemy's rows, as dicts and sorted, took most of a look of 20,000)
_WAITING = hot(select(tasks.c.task_id, tasks.c.priority, tasks.c.created_at).where(
    or_(tasks.c.status == PENDING, tasks.c.status == RETRY), tasks.c.mode == bindparam("b_mode"),
    or_(tasks.c.dispatched_at.is_(None), tasks.c.dispatched_at < bindparam("b_before"))))


def waiting_tasks(mode: str, dispatched_before: float) -> list[Any]:
    """PENDING/RETRY tasks of a mode not (re)dispatched since ``dispatched_before``: rows with ``task_id``,
    ``priority`` and ``created_at``, in no particular order."""
    def go() -> list[Any]:
        with hot_read() as c:
            return c.execute(_WAITING, {"b_mode": mode, "b_before": dispatched_before}).all()
    return retry_db(go)


def recoverable_fallback() -> list[str]:
    """Fallback tasks nobody is running: PENDING/RETRY, or STARTED with an expired lease."""
    def go() -> list[str]:
        now = time.time()
        with read_conn() as c:
            return list(c.execute(select(tasks.c.task_id).where(
                tasks.c.mode == FALLBACK,
                or_(tasks.c.status.in_((PENDING, RETRY)),
                    and_(tasks.c.status == STARTED, tasks.c.lease_until < now)))
                .order_by(tasks.c.priority.desc(), tasks.c.created_at)).scalars())
    return retry_db(go)


def try_lock(name: str, holder: str, ttl: float) -> bool:
    """Leader lease on a DB row: succeed if free, expired, or already ours."""
    def go() -> bool:
        now = time.time()
        with write_tx() as c:
            r = c.execute(update(locks).where(locks.c.name == name, or_(locks.c.holder == holder, locks.c.until < now))
                          .values(holder=holder, until=now + ttl))
            if r.rowcount == 1:
                return True
            exists = c.execute(select(locks.c.name).where(locks.c.name == name)).first()
            if exists is None:
                c.execute(insert(locks).values(name=name, holder=holder, until=now + ttl))
                return True
            return False
    try:
        return retry_db(go)
    except IntegrityError:
        return False


def release_lock(name: str, holder: str) -> None:
    def go() -> None:
        with write_tx() as c:
            c.execute(update(locks).where(locks.c.name == name, locks.c.holder == holder).values(until=0.0))
    retry_db(go)


# ------------------------------------------------------------------ workers
def heartbeat(hostname: str, pid: int, started_at: float) -> None:
    def go() -> None:
        now = time.time()
        with write_tx() as c:
            r = c.execute(update(workers).where(workers.c.hostname == hostname)
                          .values(pid=pid, last_seen=now, started_at=started_at))
            if r.rowcount == 0:
                c.execute(insert(workers).values(hostname=hostname, pid=pid, started_at=started_at, last_seen=now))
    retry_db(go, attempts=5)


def remove_worker(hostname: str, pid: int) -> None:
    def go() -> None:
        with write_tx() as c:
            c.execute(delete(workers).where(workers.c.hostname == hostname, workers.c.pid == pid))
    retry_db(go, attempts=5)


def live_workers() -> int:
    cutoff = time.time() - get_settings().worker_live_seconds
    with read_conn() as c:
        return int(c.execute(select(func.count()).select_from(workers).where(workers.c.last_seen >= cutoff)).scalar_one())


# ------------------------------------------------------------------- probe
def ledger_snapshot(since: float | None) -> list[dict]:
    def go() -> list[dict]:
        with read_conn() as c:
            q = select(tasks.c.task_id, tasks.c.status, tasks.c.mode, tasks.c.revoked_at, tasks.c.created_at,
                       files.c.rows).select_from(tasks.outerjoin(files, files.c.id == tasks.c.file_id))
            eq = select(executions)
            fq = select(sync_effects.c.task_id, func.count()).group_by(sync_effects.c.task_id)
            lq = select(sync_effects_log.c.task_id, func.count()).group_by(sync_effects_log.c.task_id)
            if since is not None:  # created since, or handed out again since (Idempotency-Key replay)
                recent = or_(tasks.c.created_at >= since, tasks.c.requested_at >= since)
                q = q.where(recent)
                sub = select(tasks.c.task_id).where(recent)
                eq = eq.where(executions.c.task_id.in_(sub))
                fq = fq.where(sync_effects.c.task_id.in_(sub))
                lq = lq.where(sync_effects_log.c.task_id.in_(sub))
            trows = c.execute(q.order_by(tasks.c.created_at)).all()
            erows = c.execute(eq.order_by(executions.c.task_id, executions.c.attempt)).all()
            effects = dict(c.execute(fq).all())
            for tid, n in c.execute(lq).all():  # EFFECTS_MODE=per-row's log (empty by default)
                effects[tid] = effects.get(tid, 0) + n
        by_task: dict[str, list[dict]] = {}
        for e in erows:
            by_task.setdefault(e.task_id, []).append(dict(
                attempt=e.attempt, worker=e.worker, pid=e.pid, started_at=e.started_at,
                finished_at=e.finished_at, outcome=e.outcome))
        return [dict(task_id=t.task_id, state=t.status, mode=t.mode, expected_effects=int(t.rows or 0),
                     effects=int(effects.get(t.task_id, 0)), revoked_at=t.revoked_at, created_at=t.created_at,
                     executions=by_task.get(t.task_id, [])) for t in trows]
    return retry_db(go)
