"""Group commit of submits (service/group_commit.py) and the ledger's many-rows write: grouped, yet every
caller gets its own answer."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

from service.group_commit import GroupCommit
from tests.service.conftest import ROOT


def test_submits_that_arrive_during_a_write_share_the_next_one():
    calls: list[list[int]] = []
    writing, gate = threading.Event(), threading.Event()

    def write_many(items):
        calls.append(list(items))
        if len(calls) == 1:
            writing.set()
            gate.wait(5)  # the first write is slow: the others pile up behind it
        return [i * 10 for i in items]

    async def main():
        gc = GroupCommit(write_many)
        first = asyncio.ensure_future(gc.submit(0))
        await asyncio.to_thread(writing.wait, 5)  # the first write is under way
        rest = [asyncio.ensure_future(gc.submit(i)) for i in range(1, 21)]
        await asyncio.sleep(0)  # each of them queues its item and waits
        gate.set()
        got = await asyncio.gather(first, *rest)
        await gc.close()
        return got, gc.batches

    got, batches = asyncio.run(main())
    assert got == [i * 10 for i in range(21)]
    assert calls == [[0], list(range(1, 21))] and batches == 2


def test_an_error_reaches_its_own_caller_and_a_failed_write_every_caller_of_it():
    def write_many(items):
        if "boom" in items:
            raise OSError("disk full")
        return [ValueError(i) if i == "bad" else i.upper() for i in items]

    async def main():
        gc = GroupCommit(write_many)
        out = await asyncio.gather(gc.submit("a"), gc.submit("bad"), gc.submit("c"), return_exceptions=True)
        failed = await asyncio.gather(gc.submit("boom"), return_exceptions=True)
        later = await gc.submit("d")  # the writer goes on after a failed write
        await gc.close()
        return out, failed, later

    out, failed, later = asyncio.run(main())
    assert out[0] == "A" and out[2] == "C" and isinstance(out[1], ValueError)
    assert isinstance(failed[0], OSError) and later == "D"


def test_a_caller_that_goes_away_does_not_undo_its_write():
    written: list[str] = []
    writing, gate = threading.Event(), threading.Event()

    def write_many(items):
        writing.set()
        gate.wait(5)
        written.extend(items)
        return list(items)

    async def main():
        gc = GroupCommit(write_many)
        t = asyncio.ensure_future(gc.submit("x"))
        await asyncio.to_thread(writing.wait, 5)  # its write is under way
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        gate.set()
        assert await gc.submit("y") == "y"
        await gc.close()

    asyncio.run(main())
    assert written == ["x", "y"]


def test_many_rows_in_one_write_answer_as_lone_submits_would(tmp_path):
    """One transaction for keyless submits; a key used twice in a batch, or before, gets the lone answer:
    replay for the same request, conflict for another."""
    code = """
import json
from service import ledger
from service.db import init_schema
init_schema()
first = ledger.create_tasks([("a", 1, 5, None), ("a", 1, 5, "k"), ("b", 2, 0, None)])
again = ledger.create_tasks([("a", 1, 5, "k"), ("a", 1, 5, None), ("a", 2, 5, "k"), ("a", 3, 1, "k2"), ("a", 3, 1, "k2")])
print(json.dumps({"first": [[r["task_id"], o] for r, o in first], "again": [[r["task_id"], o] for r, o in again]}))
"""
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'l.db'}")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [o for _, o in got["first"]] == ["created"] * 3 and len({t for t, _ in got["first"]}) == 3
    keyed = got["first"][1][0]
    assert [o for _, o in got["again"]] == ["replayed", "created", "conflict", "created", "replayed"]
    assert got["again"][0][0] == keyed and got["again"][2][0] == keyed
    assert got["again"][3][0] == got["again"][4][0] != keyed


def test_the_event_loop_writes_only_when_no_one_holds_the_lock(tmp_path):
    """The inline write never waits: with another writer in SQLite (a worker, say) it writes nothing and says
    so, and the thread path answers instead."""
    code = """
import json, sqlite3, threading
from service import ledger
from service.db import get_engine, init_schema, _write_lock
init_schema()
other = sqlite3.connect(DB, isolation_level=None)
other.execute("BEGIN IMMEDIATE")
locked = ledger.create_tasks_now([("a", 1, 5, None)])
other.execute("ROLLBACK")
free = ledger.create_tasks_now([("a", 1, 5, None), ("a", 2, 5, "k")])
again = ledger.create_tasks_now([("a", 2, 5, "k")])  # the key is taken: only the careful path may answer
with _write_lock:  # another thread of this process writing
    t = threading.Thread(target=lambda: out.append(ledger.create_tasks_now([("a", 1, 5, None)])))
    out = []
    t.start(); t.join()
n = sqlite3.connect(DB).execute("select count(*) from tasks").fetchone()[0]
print(json.dumps({"locked": locked, "free": [o for _, o in free], "again": again, "busy_thread": out[0], "rows": n}))
"""
    db = tmp_path / "n.db"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{db}")
    out = subprocess.run([sys.executable, "-c", f"DB = {str(db)!r}\n" + code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"locked": None, "free": ["created", "created"], "again": None, "busy_thread": None, "rows": 2}
