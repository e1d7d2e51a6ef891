import json
import threading

import pytest

from chaos.history import Fault, History, Meta, Op, Recorder

from .builder import HistoryBuilder, ledger_task


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_recorder_streams_jsonl_with_meta_first(tmp_path):
    path = tmp_path / "h.jsonl"
    clock = FakeClock()
    rec = Recorder(
        path,
        Meta(scenario="s", seed=7, target="demo", started_wall=1.0),
        monotonic=clock,
        wall_clock=lambda: 1000.0 + clock.t,
    )
    inv = rec.invoke(
        0, "submit", value={"kind": "add", "priority": 0, "expect": "SUCCESS", "idempotency_key": None}
    )
    clock.t += 0.25
    done = rec.ok(inv, task_id="t1", value={"task_id": "t1", "status": "PENDING", "mode": "celery"})
    # Written and flushed before close: a crash keeps the evidence.
    lines = path.read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["meta", "op", "op"]
    assert done.latency == pytest.approx(0.25) and done.time == pytest.approx(0.25)
    assert done.wall == pytest.approx(1100.25)
    assert (inv.index, done.index) == (0, 1)
    rec.close()
    h = History.load(path)
    assert h.meta is not None and h.meta.seed == 7
    [pair] = h.pairs()
    assert pair.task_id == "t1" and pair.phase == "ok"


def test_recorder_enforces_one_open_request_per_process(tmp_path):
    rec = Recorder()
    inv = rec.invoke(1, "status", task_id="x")
    with pytest.raises(ValueError):
        rec.invoke(1, "status", task_id="y")
    rec.info(inv, error="timeout")
    with pytest.raises(ValueError):
        rec.ok(inv)
    with pytest.raises(ValueError):
        rec.complete(rec.invoke(1, "status"), "invoke")


def test_recorder_faults_probes_notes():
    rec = Recorder()
    f = rec.fault_start("pause-redis", "redis", {"seconds": 2})
    rec.note("midway")
    rec.fault_end(f)
    rec.probe("ledger", {"tasks": [ledger_task("a")]})
    h = rec.history()
    [w] = h.fault_windows()
    assert (w.name, w.node, w.params) == ("pause-redis", "redis", {"seconds": 2})
    assert w.end is not None and w.end >= w.start
    ledger = h.ledger()
    assert ledger is not None and ledger.tasks[0].task_id == "a"
    assert [n.message for n in h.notes] == ["midway"]
    with pytest.raises(ValueError):
        rec.fault_end(f)


def test_recorder_is_thread_safe():
    rec = Recorder()

    def client(process: int) -> None:
        for _ in range(200):
            rec.ok(rec.invoke(process, "health"), value={})

    threads = [threading.Thread(target=client, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h = rec.history()
    assert [op.index for op in h.ops] == list(range(8 * 200 * 2))
    assert len(h.pairs()) == 1600 and h.problems() == []


def test_load_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "h.jsonl"
    b = HistoryBuilder()
    b.task("t", at=0)
    b.build().dump(path)
    with path.open("a") as fh:
        fh.write('{"type": "op", "index": 99, "proc')
    h = History.load(path)
    assert len(h.load_warnings) == 1
    assert len(h.ops) == 8


def test_round_trip_preserves_events(tmp_path):
    b = HistoryBuilder()
    b.task("t", at=0).fault("kill-worker", "worker-0", 1, 2).ledger(ledger_task("t"))
    h = b.build()
    path = tmp_path / "h.jsonl"
    h.dump(path)
    again = History.load(path)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in h]


def test_unknown_fields_are_ignored_for_forward_compatibility():
    line = json.dumps(
        {
            "type": "op",
            "index": 0,
            "process": 1,
            "f": "health",
            "phase": "invoke",
            "time": 0,
            "wall": 1,
            "future_field": 42,
        }
    )
    h = History.loads(line)
    assert isinstance(h.events[0], Op)


def test_pairs_and_incomplete_requests():
    b = HistoryBuilder()
    b.submit("a", at=0).submit(None, at=1, latency=None)
    h = b.build()
    done, open_ = h.pairs("submit")
    assert done.phase == "ok" and done.task_id == "a"
    assert open_.phase == "info" and open_.complete_time == float("inf")
    assert set(h.ops_by_task()) == {"a"}


def test_in_fault_uses_grace_and_open_windows():
    b = HistoryBuilder()
    b.fault("cut-link", "link:workers-redis", 10, 12).fault("kill-worker", "worker-1", 50)
    h = b.build()
    assert h.in_fault(11)
    assert not h.in_fault(12.5)
    assert h.in_fault(12.5, grace=1.0)
    assert h.in_fault(999)
    assert isinstance(h.faults[0], Fault)


def test_ledger_absent_or_malformed_is_none():
    assert History().ledger() is None
    rec = Recorder()
    rec.probe("ledger", "not json object")
    assert rec.history().ledger() is None
