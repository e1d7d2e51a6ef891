"""Uploaded CSV files: parsing/validation and storage (one DB row per CSV row).

A cell equal to ``POISON_MARKER`` makes processing that row raise a real
error, so the chaos suite has a deterministic FAILURE case (demo file 4).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update

from .db import file_rows, files, hot_read, read_conn, retry_db, write_tx
from .raw_sqlite import hot

POISON_MARKER = "__poison__"


class BadCSV(ValueError):
    pass


class PoisonRowError(Exception):
    """Raised while processing a poison row: a real, non-retryable task error."""


def parse_csv(raw: bytes) -> list[dict[str, str]]:
    """Header + at least one data row, consistent column count, UTF-8."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadCSV(f"file is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if "\x00" in text:
        raise BadCSV("file contains NUL bytes; not a CSV")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        table = [r for r in reader if any(cell.strip() for cell in r)]
    except csv.Error as exc:
        raise BadCSV(f"malformed CSV: {exc}") from None
    if not table:
        raise BadCSV("CSV is empty")
    header = [h.strip() for h in table[0]]
    if any(not h for h in header) or len(set(header)) != len(header):
        raise BadCSV("CSV header must have unique, non-empty column names")
    rows = []
    for i, r in enumerate(table[1:], start=2):
        if len(r) != len(header):
            raise BadCSV(f"line {i}: expected {len(header)} fields, got {len(r)}")
        rows.append(dict(zip(header, r, strict=True)))
    if not rows:
        raise BadCSV("CSV has a header but no data rows")
    return rows


# The owner of a file while its rows go in: no caller has this name (callers come from API_TOKENS), so nobody
# can see, read or submit a half-stored file.
UPLOADING = "\x00uploading"
ROWS_PER_TX = 5000  # rows per write transaction: a big upload holds the write lock a moment at a time


def store_file(name: str, rows: list[dict[str, str]], *, owner: str | None, file_id: int | None = None) -> int:
    """Store the file and its rows; returns the id.

    The rows go in ``ROWS_PER_TX`` to a transaction, so submits and workers' writes interleave with a big upload
    (one transaction for 150,000 rows held SQLite's write lock for seconds); the file becomes visible, its owner
    set, only in the last one. An upload cut short leaves an invisible file, never a partial visible one.
    ``owner`` is the uploading caller (only it may read or sync the file); ``None`` makes a shared seed."""
    def head() -> int:
        with write_tx() as c:
            values = dict(name=name[:255], rows=len(rows), created_at=time.time(), owner=UPLOADING)
            if file_id is not None:
                values["id"] = file_id
            return int(c.execute(insert(files).values(**values)).inserted_primary_key[0])

    def put(start: int, fid: int) -> None:
        with write_tx() as c:
            c.execute(_INSERT_ROWS, [dict(file_id=fid, row_no=i, data=json.dumps(r, sort_keys=True))
                                     for i, r in enumerate(rows[start:start + ROWS_PER_TX], start=start + 1)])

    def show(fid: int) -> None:
        with write_tx() as c:
            c.execute(update(files).where(files.c.id == fid).values(owner=owner))

    fid = retry_db(head)
    for start in range(0, len(rows), ROWS_PER_TX):
        retry_db(lambda start=start: put(start, fid))  # type: ignore[misc]
    retry_db(lambda: show(fid))
    return fid


_INSERT_ROWS = insert(file_rows)


def get_file(file_id: int, caller: str | None = None) -> dict | None:
    """The file, or None. With ``caller``: only a file that caller uploaded or a shared seed (so another
    caller's file is indistinguishable from a missing one)."""
    def go() -> dict | None:
        q = select(files).where(files.c.id == file_id)
        if caller is not None:
            q = q.where(or_(files.c.owner.is_(None), files.c.owner == caller))
        with read_conn() as c:
            r = c.execute(q).first()
        return dict(r._mapping) if r else None
    return retry_db(go)


# (file id, caller) pairs a caller may submit: a file is never deleted, re-owned or changed once stored, so a
# yes stays true for the life of the process (a no is asked again: the file may be uploaded meanwhile)
_visible: dict[tuple[int, str], None] = {}
VISIBLE_CACHE_MAX = 100_000


def known_visible(file_id: int, caller: str) -> bool:
    """``visible`` from the cache alone (no DB): False means not known yet, not that it is not visible."""
    return (file_id, caller) in _visible


def visible(file_id: int, caller: str) -> bool:
    """May ``caller`` submit ``file_id``? The DB is asked once per (file, caller) and process: a submit's
    file check is then free."""
    key = (file_id, caller)
    if key in _visible:
        return True
    if get_file(file_id, caller) is None:
        return False
    if len(_visible) >= VISIBLE_CACHE_MAX:
        _visible.clear()
    _visible[key] = None
    return True


@functools.cache
def _page_stmt(chunk: int) -> Any:
    """One page of a file's rows, built once (an attempt reads its rows on every run)."""
    return hot(select(file_rows.c.row_no, file_rows.c.data)
               .where(file_rows.c.file_id == bindparam("fid"), file_rows.c.row_no > bindparam("after"))
               .order_by(file_rows.c.row_no).limit(chunk))


def iter_rows(file_id: int, chunk: int = ROWS_PER_TX) -> Iterator[tuple[int, str]]:
    """(row_no, data) in order, read ``chunk`` rows at a time: an attempt starts on its first rows at once and
    renews its lease between chunks (reading 150,000 rows in one go outlasted the lease before row 1)."""
    after = 0
    stmt = _page_stmt(chunk)
    while True:
        def page(after: int = after) -> list[tuple[int, str]]:
            with hot_read() as c:
                return [(r.row_no, r.data) for r in c.execute(stmt, {"fid": file_id, "after": after}).all()]
        batch = retry_db(page)
        yield from batch
        if len(batch) < chunk:  # the last page (a small file's only one): no query to learn that it was
            return
        after = batch[-1][0]


def process_row(row_no: int, data: str) -> str:
    """The per-row 'business logic': validate and normalise.  Poison rows raise."""
    obj = json.loads(data)
    for k, v in obj.items():
        if str(v).strip() == POISON_MARKER:
            raise PoisonRowError(f"row {row_no} is poison (column {k!r} = {POISON_MARKER!r}); cannot sync")
    return json.dumps({k: str(v).strip() for k, v in obj.items()}, sort_keys=True)
