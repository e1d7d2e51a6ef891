"""service/raw_sqlite.py: SQLAlchemy statements run on sqlite3 give what SQLAlchemy itself gives, and its errors."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from service.raw_sqlite import RawConnection, hot

md = MetaData()
items = Table("items", md, Column("id", Integer, primary_key=True), Column("name", String, unique=True),
              Column("state", String), Column("n", Integer))
INSERT = hot(insert(items))
BUMP = hot(update(items).where(items.c.name == bindparam("b_name"), and_(items.c.state != "done"))
           .values(n=items.c.n + 1, state=bindparam("b_state")).returning(items.c.id, items.c.n))
BY_NAME = hot(select(items.c.state, items.c.n).where(items.c.name == bindparam("b_name")))


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "raw.db"
    md.create_all(create_engine(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    yield RawConnection(conn)
    conn.close()


def test_statements_run_as_sqlalchemy_would(raw):
    raw.execute(INSERT, [{"name": "a", "state": "new", "n": 0}, {"name": "b", "state": "new", "n": 5}])
    r = raw.execute(BUMP, {"b_name": "b", "b_state": "busy"})
    assert r.rowcount == 1 and tuple(r.first()) == (2, 6)
    row = raw.execute(BY_NAME, {"b_name": "b"}).first()
    assert (row.state, row.n) == ("busy", 6) and row._mapping == {"state": "busy", "n": 6}
    raw.execute(update(items).where(items.c.name == "a").values(state="done"))  # not hot: compiled for the call
    assert raw.execute(BUMP, {"b_name": "a", "b_state": "x"}).rowcount == 0  # the literal "done" is bound
    assert raw.execute(BY_NAME, {"b_name": "zzz"}).first() is None
    assert raw.dialect.name == "sqlite"


def test_errors_are_sqlalchemys_classes(raw):
    raw.execute(INSERT, {"name": "a", "state": "new", "n": 0})
    with pytest.raises(IntegrityError):
        raw.execute(INSERT, {"name": "a", "state": "new", "n": 1})
    locker = sqlite3.connect(raw.raw.execute("PRAGMA database_list").fetchone()[2], isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        raw.raw.execute("PRAGMA busy_timeout=0")
        with pytest.raises(OperationalError, match="locked"):  # what retry_db retries
            raw.execute(INSERT, {"name": "b", "state": "new", "n": 0})
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_in_of_literals_is_refused_with_the_way_out(raw):
    with pytest.raises(ValueError, match="write IN as OR"):
        raw.execute(select(items.c.id).where(items.c.state.in_(("a", "b"))))


def test_a_failed_commit_leaves_the_connection_out_of_its_transaction(tmp_path):
    """A COMMIT that fails (here a deferred foreign key) is rolled back: the process's one raw connection must
    be able to BEGIN again, or every later write of the process would fail."""
    from service.db import _committed

    conn = sqlite3.connect(tmp_path / "fk.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.IntegrityError), _committed(conn):
        conn.execute("INSERT INTO child VALUES (7)")  # no parent 7: refused at COMMIT
    assert not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE")
    with _committed(conn):
        conn.execute("INSERT INTO parent VALUES (7)")
    assert conn.execute("SELECT count(*) FROM child").fetchone() == (0,)
    conn.close()
