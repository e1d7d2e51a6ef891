from chaos.checkers import transitions
from chaos.checkers.config import CheckConfig

from .builder import HistoryBuilder, clean


def test_clean_history_passes():
    r = transitions.check(clean().build())
    assert r.valid is True
    assert r.stats["observations"] > 0


def test_retry_cycles_and_skipped_states_are_legal():
    b = HistoryBuilder()
    b.submit("t", at=0)
    for i, s in enumerate(["STARTED", "RETRY", "STARTED", "RETRY", "SUCCESS"]):
        b.status("t", s, at=1 + i)
    b.submit("u", at=0).status("u", "SUCCESS", at=1).drain("u", "SUCCESS")  # PENDING -> SUCCESS: sampled
    assert transitions.check(b.build()).valid is True


def test_going_backwards_is_illegal():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "STARTED", at=1).status("t", "PENDING", at=2)
    r = transitions.check(b.build())
    assert r.valid is False
    [f] = r.findings
    assert (f.kind, f.task_ids) == ("illegal-transition", ["t"])
    assert (f.evidence["from"], f.evidence["to"]) == ("STARTED", "PENDING")


def test_terminal_state_never_changes():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "SUCCESS", at=1).drain("t", "FAILURE")
    r = transitions.check(b.build())
    assert [(f.evidence["from"], f.evidence["to"]) for f in r.findings] == [("SUCCESS", "FAILURE")]


def test_concurrent_reads_may_disagree_in_order():
    # Both reads overlap in time: the server may have answered the later-sent one first.
    b = HistoryBuilder()
    b.submit("t", at=0)
    b.status("t", "STARTED", at=1.0, latency=1.0)  # 1.0 .. 2.0
    b.status("t", "PENDING", at=1.5, latency=0.1)  # sent before the first one completed
    assert transitions.check(b.build()).valid is True


def test_not_found_is_left_to_lost():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "STARTED", at=1).status("t", "NOT_FOUND", at=2)
    assert transitions.check(b.build()).valid is True


def test_unknown_statuses_are_counted_not_judged():
    b = HistoryBuilder()
    b.submit("t", at=0).status("t", "WEIRD", at=1).status("t", "SUCCESS", at=2)
    r = transitions.check(b.build(), CheckConfig())
    assert r.valid is True
    assert r.stats["unknown_statuses"] == {"WEIRD": 1}
