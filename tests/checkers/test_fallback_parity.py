from chaos.checkers import fallback_parity
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, ledger_task


def test_no_fallback_task_is_unknown():
    r = fallback_parity.check(clean().build())
    assert r.valid == UNKNOWN
    assert r.stats["per_mode"]["celery"]["accepted"] == 3


def test_fallback_tasks_that_complete_pass():
    b = clean(2)
    b.task("f", at=3, mode="fallback")
    b.ledger(ledger_task("t0"), ledger_task("t1", created=1), ledger_task("f", created=3, mode="fallback"))
    r = fallback_parity.check(b.build())
    assert r.valid is True
    assert r.stats["per_mode"]["fallback"] == {"accepted": 1, "expected": 1}


def test_fallback_task_stuck():
    b = HistoryBuilder()
    b.task("ok", at=0)
    b.submit("f", at=1, mode="fallback").drain("f", "PENDING")
    r = fallback_parity.check(b.build())
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("fallback-stuck", ["f"])]


def test_fallback_task_lost_or_wrong():
    b = HistoryBuilder()
    b.submit("gone", at=1, mode="fallback").drain("gone", "NOT_FOUND")
    b.submit("bad", at=1, mode="fallback", expect="SUCCESS").drain("bad", "FAILURE")
    b.submit("rev", at=1, mode="fallback").cancel("rev", at=2).drain("rev", "REVOKED")
    r = fallback_parity.check(b.build())
    assert sorted((f.kind, f.task_ids[0]) for f in r.findings) == [
        ("fallback-lost", "gone"),
        ("fallback-wrong-outcome", "bad"),
    ]
    assert r.stats["per_mode"]["fallback"]["revoked"] == 1
