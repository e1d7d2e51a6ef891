from chaos.checkers import stuck
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder, clean, ledger_task


def test_clean_history_passes():
    r = stuck.check(clean().build())
    assert r.valid is True
    assert r.stats["terminal"] == 3


def test_non_terminal_drain_is_stuck():
    b = clean(2)
    b.submit("slow", at=3).status("slow", "STARTED", at=4).drain("slow", "STARTED")
    r = stuck.check(b.build())
    assert r.valid is False
    [f] = r.findings
    assert (f.kind, f.task_ids) == ("stuck", ["slow"])
    assert f.evidence["final_source"] == "drain"


def test_ledger_decides_when_there_is_no_drain():
    b = HistoryBuilder()
    b.submit("p", at=0).submit("q", at=0)
    b.ledger(ledger_task("p", state="PENDING"), ledger_task("q"))
    r = stuck.check(b.build())
    assert [(f.kind, f.task_ids, f.evidence["final_source"]) for f in r.findings] == [
        ("stuck", ["p"], "ledger")
    ]


def test_not_found_is_left_to_lost():
    b = HistoryBuilder()
    b.submit("gone", at=0).drain("gone", "NOT_FOUND")
    assert stuck.check(b.build()).valid is True


def test_no_final_evidence_is_unknown():
    b = HistoryBuilder()
    b.submit("t", at=0).drain("t", "SUCCESS", phase="info")
    assert stuck.check(b.build()).valid == UNKNOWN


def _located(where_first, where_second, detail="in no queue, not in the unacked set, held by no live worker: "
                                                  "the message is gone"):
    from chaos.history import Probe

    from .builder import HistoryBuilder, wall

    b = HistoryBuilder()
    b.submit("t", at=0.0)
    b.drain("t", "PENDING")
    loc = {"first": {"where": where_first, "detail": detail}, "second": {"where": where_second, "detail": detail}}
    b._add(150.0, Probe(0, "broker", 150.0, wall(150.0), {"t": loc}))
    return b.build()


def test_a_task_gone_twice_is_lost_not_stuck():
    from chaos.checkers import lost

    h = _located("gone", "gone")
    assert stuck.check(h).valid is True
    r = lost.check(h)
    assert r.kinds() == ["gone"] and "task_acks_late" in r.findings[0].message


def test_a_task_seen_somewhere_once_is_stuck_with_its_place():
    h = _located("gone", "unacked", detail="in kombu's unacked set (taken by a worker under acks_late)")
    r = stuck.check(h)
    assert r.kinds() == ["stuck"]
    assert "It is in kombu's unacked set" in r.findings[0].message and "visibility_timeout" in r.findings[0].message
