"""Fast checks without processes: config validation, CSV parsing, tokens."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service.config import parse_tokens
from service.files import BadCSV, PoisonRowError, parse_csv, process_row
from tests.service.conftest import ROOT, TARGET_TOKENS


def test_parse_tokens():
    assert parse_tokens("a=x, b=y") == {"a": "x", "b": "y"}
    for bad in ("", "abc", "=x", "a="):
        with pytest.raises(ValueError):
            parse_tokens(bad)


@pytest.mark.parametrize("raw", [b"", b"a,b\n", b"\xff\xfe\x00", b"a,b\n1,2,3\n", b"a,a\n1,2\n", b'a,b\n"1,2\n'])
def test_bad_csv(raw):
    with pytest.raises(BadCSV):
        parse_csv(raw)


def test_good_csv_and_poison():
    rows = parse_csv(b"\xef\xbb\xbfid,name\n1,x\n\n2,__poison__\n")
    assert rows == [{"id": "1", "name": "x"}, {"id": "2", "name": "__poison__"}]
    import json
    assert json.loads(process_row(1, json.dumps(rows[0]))) == rows[0]
    with pytest.raises(PoisonRowError, match="row 2 is poison"):
        process_row(2, json.dumps(rows[1]))


@pytest.mark.parametrize("var,value,needle", [
    ("LEASE_SECONDS", "abc", "LEASE_SECONDS"),
    ("PUBLISH_TIMEOUT_MS", "-1", "PUBLISH_TIMEOUT_MS"),
    ("VISIBILITY_TIMEOUT_SECONDS", "0", "VISIBILITY_TIMEOUT_SECONDS"),
    ("EFFECTS_MODE", "sometimes", "EFFECTS_MODE"),
    ("RECOVERY_SWEEPER", "maybe", "RECOVERY_SWEEPER"),
    ("API_TOKENS", "nonsense", "API_TOKENS"),
    ("CELERY_BROKER_URL", "amqp://x", "CELERY_BROKER_URL"),
    ("FALLBACK_CONCURRENCY", "-1", "FALLBACK_CONCURRENCY"),
])
def test_bad_config_is_a_clear_startup_error(var, value, needle, tmp_path):
    env = dict(os.environ, **{var: value, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    p = subprocess.run([sys.executable, "-c", "import service.main"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "invalid data-sync configuration" in p.stderr and needle in p.stderr, p.stderr


def test_unsafe_knobs_parse_and_default_to_the_safe_side(monkeypatch):
    from service.config import Settings

    s = Settings()
    assert (s.task_acks_late, s.task_reject_on_worker_lost, s.recovery_sweeper, s.claim_fencing,
            s.durable_revoke, s.fallback, s.broker_connection_retry) == (True,) * 7
    assert (s.effects_mode, s.unknown_status, s.fallback_store) == ("transactional", "not-found", "durable")
    assert s.publish_bounded and s.visibility_timeout_seconds == 3600
    for var, value in {"TASK_ACKS_LATE": "false", "TASK_REJECT_ON_WORKER_LOST": "false", "RECOVERY_SWEEPER": "off",
                       "CLAIM_FENCING": "off", "EFFECTS_MODE": "per-row", "DURABLE_REVOKE": "off",
                       "FALLBACK": "off", "PUBLISH_TIMEOUT_MS": "0", "UNKNOWN_STATUS": "pending",
                       "FALLBACK_STORE": "memory", "BROKER_CONNECTION_RETRY": "false",
                       "VISIBILITY_TIMEOUT_SECONDS": "1"}.items():
        monkeypatch.setenv(var, value)
    s = Settings()
    assert not any((s.task_acks_late, s.task_reject_on_worker_lost, s.recovery_sweeper, s.claim_fencing,
                    s.durable_revoke, s.fallback, s.broker_connection_retry, s.publish_bounded))
    assert (s.effects_mode, s.unknown_status, s.fallback_store) == ("per-row", "pending", "memory")
    assert s.visibility_timeout_seconds == 1


def test_short_visibility_timeout_sweeps_unacked_often_enough():
    from service.celery_app import _restore_options

    assert _restore_options(1) == {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    assert _restore_options(30) == {"unacked_restore_interval": 10, "unacked_restore_throttle": 1}
    assert _restore_options(3600) == {"unacked_restore_interval": 10, "unacked_restore_throttle": 10}


def test_celery_settings_follow_the_knobs(tmp_path):
    code = ("import service.tasks; from service.celery_app import app; c = app.conf; "
            "print(c.task_acks_late, c.task_reject_on_worker_lost, c.broker_connection_retry, "
            "c.broker_connection_retry_on_startup, c.broker_transport_options['visibility_timeout'], "
            "app.tasks['service.sync_file'].acks_late)")
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True", "True", "True", "3600", "True"], out.stderr
    env.update(TASK_ACKS_LATE="false", TASK_REJECT_ON_WORKER_LOST="false", BROKER_CONNECTION_RETRY="false",
               VISIBILITY_TIMEOUT_SECONDS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "False", "True", "1", "False"], out.stderr


def test_target_tokens_are_the_pyprojects():
    """tests use the reference target's own tokens; they must be the ones its [tool.celery-chaos.target.env] sets."""
    tomllib = pytest.importorskip("tomllib")
    env = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["celery-chaos"]["target"]["env"]
    assert {caller: token for token, caller in parse_tokens(env["API_TOKENS"]).items()} == TARGET_TOKENS
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["celery-chaos"]["target"]["http"][
        "token"] == TARGET_TOKENS["chaos"]


def test_old_database_gets_file_owners_failing_closed(tmp_path):
    """A database from before uploads were caller-scoped: the API adds ``files.owner``; the demo seeds become
    shared, every older upload nobody's (404 for every caller), rather than everyone's."""
    import sqlite3
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE files (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL, rows INTEGER NOT NULL,
                            created_at FLOAT NOT NULL);
        INSERT INTO files VALUES (1, 'demo-5-rows.csv', 5, 1.0), (4, 'demo-poison-row-4.csv', 8, 1.0),
                                 (5, 'someones.csv', 2, 2.0);
    """)
    con.commit()
    con.close()
    code = ("from service.db import init_schema; from service.files import get_file; init_schema(); init_schema(); "
            "print([get_file(i, 'chaos') is not None for i in (1, 4, 5)], get_file(5) is not None)")
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{db}")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[True, True, False] True", out.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT id, owner FROM files ORDER BY id").fetchall() == [(1, None), (4, None), (5, "")]
    con.close()


def test_a_big_file_goes_in_a_chunk_at_a_time_and_is_seen_only_complete(tmp_path):
    """Rows in several write transactions (a big upload must not hold the write lock for seconds), the file
    invisible to its caller until the last one; an attempt reads the rows back a chunk at a time, in order."""
    code = """
import json
from service import files
from service.db import init_schema
init_schema()
files.ROWS_PER_TX = 3
seen, real_put = [], files.retry_db
def spy(fn):  # after every transaction of the store: can the caller see file 1 yet?
    out = real_put(fn)
    files.retry_db = real_put
    seen.append(files.get_file(1, "chaos") is not None)
    files.retry_db = spy
    return out
files.retry_db = spy
fid = files.store_file("big.csv", [{"n": str(i)} for i in range(1, 11)], owner="chaos", file_id=1)
files.retry_db = real_put
rows = list(files.iter_rows(fid, chunk=4))
print(json.dumps({"seen": seen, "rows": [r[0] for r in rows], "last": json.loads(rows[-1][1])}))
"""
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'big.db'}")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # head, four chunks of at most 3 rows, then the commit that shows it
    assert got["seen"] == [False] * 5 + [True], got
    assert got["rows"] == list(range(1, 11)) and got["last"] == {"n": "10"}
