"""Database engine and schema (SQLAlchemy Core, portable to PostgreSQL).

SQLite specifics are confined to this module: WAL + busy_timeout pragmas and
``BEGIN IMMEDIATE`` for write transactions (so read-then-write sequences take
the write lock up front instead of failing with SQLITE_BUSY on upgrade).
Engines are cached per PID because Celery's prefork pool forks after import.
"""
from __future__ import annotations

import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from .config import get_settings
from .raw_sqlite import RawConnection, translate

metadata = MetaData()

files = Table(
    "files", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    # The caller that uploaded it: only that caller may read or sync it. NULL = a shared demo seed (files 1-4,
    # seed.py), readable and syncable by every caller.
    Column("owner", String(255), nullable=True),
)

file_rows = Table(
    "file_rows", metadata,
    Column("file_id", Integer, primary_key=True),
    Column("row_no", Integer, primary_key=True),
    Column("data", Text, nullable=False),  # JSON object of the CSV row
)

tasks = Table(
    "tasks", metadata,
    Column("task_id", String(64), primary_key=True),
    Column("caller", String(255), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", Float, nullable=True),
    Column("dispatched_at", Float, nullable=True),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("requested_at", Float, nullable=True),  # last idempotent replay (so ledger ?since= sees it)
    UniqueConstraint("caller", "idempotency_key", name="uq_tasks_caller_idem"),
    Index("ix_tasks_status", "status"),
    Index("ix_tasks_caller_created", "caller", "created_at"),
    Index("ix_tasks_created", "created_at"),
)

executions = Table(
    "executions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("outcome", String(16), nullable=True),
    UniqueConstraint("task_id", "attempt", name="uq_exec_task_attempt"),
)

synced_rows = Table(
    "synced_rows", metadata,
    Column("file_id", Integer, primary_key=True),
    Column("row_no", Integer, primary_key=True),
    Column("data", Text, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("synced_at", Float, nullable=False),
)

sync_effects = Table(
    "sync_effects", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("row_no", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("task_id", "row_no", name="uq_effects_task_row"),
)

# EFFECTS_MODE=per-row (a canary knob): each row's effect is committed on its own, as a plain log entry with no
# unique constraint, so a redelivered task writes its rows again. The ledger counts both tables.
sync_effects_log = Table(
    "sync_effects_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("row_no", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_effects_log_task", "task_id"),
)

workers = Table(
    "workers", metadata,
    Column("hostname", String(255), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=True),
    Column("until", Float, nullable=False),
)

_engines: dict[int, Engine] = {}
_engines_lock = threading.Lock()
_schema_ready: set[int] = set()


def _make_engine() -> Engine:
    s = get_settings()
    if not s.is_sqlite:
        return create_engine(s.database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    engine = create_engine(
        s.database_url,
        connect_args={"timeout": 5.0, "check_same_thread": False},
        pool_size=20,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=5000")
        for _ in range(50):
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                break
            except Exception:  # noqa: BLE001 - "database is locked" while another process switches
                time.sleep(0.1)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def get_engine() -> Engine:
    pid = os.getpid()
    eng = _engines.get(pid)
    if eng is None:
        with _engines_lock:
            eng = _engines.get(pid)
            if eng is None:
                eng = _engines[pid] = _make_engine()
    if pid not in _schema_ready:
        init_schema(eng)
        _schema_ready.add(pid)
    return eng


def init_schema(engine: Engine | None = None) -> None:
    eng = engine or get_engine()
    retry_db(lambda: metadata.create_all(eng))
    retry_db(lambda: _add_file_owner(eng))


# Owner of files uploaded before uploads were caller-scoped: no caller can be named "" (API_TOKENS rejects it),
# so such files are nobody's (404 for everyone); only the demo seeds become shared.
NO_OWNER = ""


def _add_file_owner(eng: Engine) -> None:
    """Databases created before ``files.owner`` existed: add it (fail closed for old uploads, see NO_OWNER)."""
    from sqlalchemy import inspect, or_, update

    if "owner" in {c["name"] for c in inspect(eng).get_columns("files")}:
        return
    with eng.begin() as conn:  # BEGIN IMMEDIATE on SQLite: one process migrates, the others see it done
        if "owner" in {c["name"] for c in inspect(conn).get_columns("files")}:
            return
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN owner VARCHAR(255)")
        from .seed import DEMO  # here: seed imports this module
        seeds = [(files.c.id == fid) & (files.c.name == name) for fid, (name, _) in DEMO.items()]
        conn.execute(update(files).where(~or_(*seeds)).values(owner=NO_OWNER))


T = TypeVar("T")


def _is_transient(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return any(s in msg for s in ("database is locked", "database is busy", "locked", "already exists",
                                  "could not serialize", "deadlock", "connection"))


def retry_db(fn: Callable[[], T], attempts: int = 40) -> T:
    """Run ``fn`` retrying transient lock/busy errors with jittered backoff (~20 s max)."""
    delay = 0.02
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if i == attempts - 1 or not _is_transient(exc):
                raise
            time.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")


# One writer at a time per process: threads queue here, in order, instead of all hitting SQLite's busy handler,
# whose sleeps (1, 2, 5 ... 100 ms) are what a submit waits on when a dozen of them write at once. Other
# processes (the workers) still meet the busy handler, but once per process, not once per thread.
_write_lock = threading.RLock()


def _new_write_lock() -> None:
    global _write_lock, _lock_depth
    _write_lock = threading.RLock()  # a prefork child must not inherit a lock another thread of the parent held
    _lock_depth = 0


os.register_at_fork(after_in_child=_new_write_lock)


# ... and one writer at a time across the service's processes (the API, every worker and pool child): a flock
# on a file beside the database. A waiter tries again within a millisecond, where SQLite's busy handler sleeps
# 1, 2, 5 ... 100 ms between tries; with four workers of no-op tasks those sleeps were most of a task's time.
# The kernel drops the lock with its holder, so a SIGKILLed worker holds nothing. Only the outermost write_tx of
# the holding thread takes it (a nested one must not release it early).
_lock_files: dict[int, int | None] = {}
_lock_depth = 0


def _lock_fd() -> int | None:
    """This process's descriptor of the writer lock file (a forked child opens its own: a shared description
    would share the lock), None when the database is not a SQLite file."""
    pid = os.getpid()
    if pid not in _lock_files:
        database = get_engine().url.database if get_settings().is_sqlite else None
        fd = None
        if database and database != ":memory:":
            try:
                fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a read-only directory, say: SQLite's own locking still holds
                logging.getLogger("service.db").warning("no writer lock file beside %s (%s)", database, exc)
        _lock_files[pid] = fd
    return _lock_files[pid]


FLOCK_PATIENCE_S = 5.0  # SQLite's busy timeout: past it the writer goes on to SQLite's lock alone


def _flock(fd: int, patience: float) -> bool:
    """Take the file lock within ``patience`` s, trying every 0.2-1 ms (flock itself cannot time out, and a
    stopped holder must not hang every writer)."""
    deadline, pause = time.monotonic() + patience, 0.0002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.001)


@contextmanager
def _writer(blocking: bool = True):
    """This process's write lock, then the processes' file lock (WouldWait instead of waiting: ``blocking``)."""
    global _lock_depth
    if not _write_lock.acquire(blocking=blocking):
        raise WouldWait
    try:
        fd = _lock_fd() if _lock_depth == 0 else None
        if fd is not None and not _flock(fd, FLOCK_PATIENCE_S if blocking else 0.0):
            if not blocking:
                raise WouldWait
            fd = None  # a holder that stays (a SIGSTOPped worker): SQLite's own busy handling decides, as before
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _write_lock.release()


@contextmanager
def write_tx():
    """A short write transaction (BEGIN IMMEDIATE on SQLite), one writer at a time in the service."""
    with _writer(), get_engine().begin() as conn:
        yield conn


class WouldWait(Exception):
    """``write_tx_nowait`` could not write without waiting for a lock."""


_raw_connections: dict[tuple[str, int], Connection] = {}


def _process_connection(role: str, *pragmas: str) -> sqlite3.Connection:
    """This process's sqlite3 connection for ``role`` (the engine's, with its pragmas, then ``pragmas``; a forked
    child opens its own), held out of the pool for good and used raw."""
    key = (role, os.getpid())
    conn = _raw_connections.get(key)
    if conn is None:
        conn = get_engine().connect()  # pooled by SQLAlchemy (closed with the engine), used raw below
        for pragma in pragmas:
            conn.connection.driver_connection.execute(pragma)
        _raw_connections[key] = conn
    return conn.connection.driver_connection


@contextmanager
def _committed(raw: sqlite3.Connection):
    """The rest of a transaction the caller began on ``raw``: COMMIT, or ROLLBACK on any error, the COMMIT's
    own too, so the connection is never left inside a transaction (its next BEGIN would fail)."""
    try:
        yield raw
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise


@contextmanager
def write_tx_nowait():
    """``write_tx`` for the event loop itself, where a hop to a thread costs more than a short write: raises
    WouldWait, having written nothing, when another thread of this process or another process holds the lock.

    Yields the raw sqlite3 connection in a BEGIN IMMEDIATE transaction (statements with ``?`` parameters):
    SQLAlchemy's statement handling cost more of a submit's time on the loop than SQLite's insert itself. Its
    connection never waits: SQLite's busy timeout 0 and no WAL checkpoints on its commits (the other
    connections checkpoint)."""
    if not get_settings().is_sqlite:
        raise WouldWait
    raw = _process_connection("nowait", "PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0")
    with _writer(blocking=False):
        try:
            raw.execute("BEGIN IMMEDIATE")  # busy at once while a writer outside the file lock holds SQLite's
        except sqlite3.OperationalError as exc:
            raise WouldWait from exc
        with _committed(raw):
            yield raw


@contextmanager
def hot_tx():
    """``write_tx`` for the workers' hot path (claim, lease renewal, the final commit): on SQLite a
    ``RawConnection`` running compiled statements on sqlite3 (see raw_sqlite.py), elsewhere ``write_tx``."""
    if not get_settings().is_sqlite:
        with write_tx() as conn:
            yield conn
        return
    with _writer():
        raw = _process_connection("hot")  # used only under _writer, so one at a time
        try:
            raw.execute("BEGIN IMMEDIATE")
            with _committed(raw):
                yield RawConnection(raw)
        except sqlite3.Error as exc:  # BEGIN or COMMIT (the statements' errors are translated already)
            raise translate(exc) from exc


_hot_readers = threading.local()  # per thread: (pid, its own sqlite3 connection)


@contextmanager
def hot_read():
    """``read_conn`` for the workers' hot path (a task's rows, its periodic state check): on SQLite a
    ``RawConnection`` on this thread's own sqlite3 connection, where one statement is its own snapshot. Opened
    outside the engine's pool: every fallback thread keeps one, and FALLBACK_CONCURRENCY may pass the pool."""
    if not get_settings().is_sqlite:
        with read_conn() as conn:
            yield conn
        return
    held = getattr(_hot_readers, "held", None)
    if held is None or held[0] != os.getpid():  # a forked child opens its own
        raw = sqlite3.connect(get_engine().url.database, timeout=5.0, isolation_level=None, check_same_thread=False)
        raw.execute("PRAGMA busy_timeout=5000")
        held = _hot_readers.held = (os.getpid(), raw)
    yield RawConnection(held[1])


def insert_sql(table: Table, columns: tuple[str, ...]) -> str:
    """A plain ``INSERT`` of ``columns`` into ``table`` with ``?`` parameters, for ``write_tx_nowait``."""
    for name in columns:
        table.c[name]  # noqa: B018 - a KeyError here, at import, for a column the table does not have
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@contextmanager
def read_conn():
    """A read-only snapshot (deferred BEGIN on SQLite: never takes the write lock)."""
    with get_engine().connect().execution_options(readonly=True) as conn:
        yield conn
        conn.rollback()
