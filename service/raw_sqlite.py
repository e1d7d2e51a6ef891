"""SQLAlchemy statements compiled once for SQLite and run on the raw sqlite3 connection: the workers' hot path.

With eight pool processes taking turns at SQLite's one writer, a no-op task's claim and final commit held the
write lock mostly in SQLAlchemy's execution machinery (the execution context, events, result objects), not in
SQLite: 0.82-0.89 ms per task through SQLAlchemy, 0.36 ms through this module (one process, 5 rows). The
statements stay SQLAlchemy Core expressions, the one source of their SQL: each
is compiled once (``hot``) with its bound-parameter order, then executed with a tuple. ``RawConnection`` offers
the few calls the ledger's hot functions make (``execute`` with a dict or a list of dicts, ``first``,
``rowcount``, ``dialect``), and raises SQLAlchemy's own exception classes, so ``retry_db`` and every ``except``
stay as they are.
"""
from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError

DIALECT = sqlite_dialect.dialect()

# id(statement) -> (statement, {column keys: Compiled}): statements registered by ``hot``, which live as long as
# the process (module constants, functools.cache). The entry holds the statement, so its id is never reused.
_hot: dict[int, tuple[Any, dict[tuple[str, ...], Compiled]]] = {}


class Compiled:
    """One statement's SQLite SQL, its ``?`` parameters' names in order, and the values of its literals."""

    __slots__ = ("defaults", "names", "returns", "sql")

    def __init__(self, stmt: Any, keys: tuple[str, ...] | None) -> None:
        c = stmt.compile(dialect=DIALECT, column_keys=list(keys) if keys else None)
        if "POSTCOMPILE" in c.string:  # IN (...) is rendered at execution, by SQLAlchemy alone
            raise ValueError(f"not a statement for raw execution (write IN as OR): {c.string}")
        self.sql: str = c.string
        self.names: tuple[str, ...] = tuple(c.positiontup or ())
        self.defaults: dict[str, Any] = dict(c.params)
        self.returns = bool(getattr(c, "returning", None)) or bool(getattr(stmt, "is_select", False))

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        d = self.defaults
        return tuple(values[n] if n in values else d[n] for n in self.names)


def hot(stmt: Any) -> Any:
    """Mark a long-lived statement as compiled once per set of parameter keys (returns it unchanged)."""
    _hot.setdefault(id(stmt), (stmt, {}))
    return stmt


def _compiled(stmt: Any, keys: tuple[str, ...] | None) -> Compiled:
    entry = _hot.get(id(stmt))
    if entry is None or entry[0] is not stmt:
        return Compiled(stmt, keys)  # not a hot statement: compiled for this call only
    by_keys = entry[1]
    c = by_keys.get(keys or ())
    if c is None:
        c = by_keys[keys or ()] = Compiled(stmt, keys)
    return c


_row_types: dict[tuple[str, ...], type] = {}


def _row_type(names: tuple[str, ...]) -> type:
    t = _row_types.get(names)
    if t is None:
        base = namedtuple("RawRow", names, rename=True)  # type: ignore[misc]
        t = _row_types[names] = type("RawRow", (base,), {"__slots__": (), "_mapping": property(base._asdict)})
    return t


class RawResult:
    """What the ledger reads of a result: ``rowcount`` and the rows (``first``, ``all``)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount, self.rows = rowcount, rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return list(self.rows)


class RawConnection:
    """A sqlite3 connection inside a transaction the caller opened, executing SQLAlchemy statements."""

    dialect = DIALECT

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, stmt: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> RawResult:
        many = isinstance(params, Sequence) and not isinstance(params, Mapping)
        first: Mapping[str, Any] = (params[0] if params else {}) if many else (params or {})  # type: ignore[index]
        keys = tuple(first) if getattr(stmt, "is_insert", False) else None  # an INSERT's columns: its keys
        c = _compiled(stmt, keys)
        args: Any = [c.args(p) for p in params] if many else c.args(first)  # type: ignore[union-attr]
        try:
            if many:
                cur = self.raw.executemany(c.sql, args)
                return RawResult(cur.rowcount, [])
            cur = self.raw.execute(c.sql, args)
            if not c.returns:
                return RawResult(cur.rowcount, [])
            rows = cur.fetchall()
            if rows and cur.description:
                make = _row_type(tuple(d[0] for d in cur.description))
                rows = [make(*r) for r in rows]
            return RawResult(len(rows) if getattr(stmt, "is_dml", False) else cur.rowcount, rows)
        except sqlite3.Error as exc:
            raise translate(exc, c.sql, args) from exc


def translate(exc: sqlite3.Error, sql: str | None = None, args: Any = None) -> DBAPIError:
    """sqlite3's error as SQLAlchemy's class for it (IntegrityError, OperationalError...)."""
    return DBAPIError.instance(sql, args, exc, sqlite3.Error, dialect=DIALECT)
