"""Fast checks without processes: config validation, CSV parsing, tokens."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.config import parse_tokens
from service.files import BadCSV, PoisonRowError, parse_csv, process_row
from tests.service.conftest import ROOT


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
    ("PUBLISH_TIMEOUT_MS", "0", "PUBLISH_TIMEOUT_MS"),
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
