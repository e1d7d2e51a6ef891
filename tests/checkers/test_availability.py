from chaos.checkers import availability
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder

CFG = CheckConfig(latency_min_samples=5, latency_p99_ms=100, fault_grace_s=1.0)


def _steady(n=10, latency=0.02):
    b = HistoryBuilder()
    for i in range(n):
        b.submit(f"t{i}", at=float(i), latency=latency)
    return b


def test_fast_and_available_passes():
    r = availability.check(_steady().build(), CFG)
    assert r.valid is True
    assert r.stats["latency_p99_ms"] == 20.0


def test_too_few_samples_is_unknown():
    r = availability.check(_steady(3).build(), CFG)
    assert r.valid == UNKNOWN


def test_slow_outside_faults_fails():
    r = availability.check(_steady(latency=0.5).build(), CFG)
    assert r.valid is False
    assert r.kinds() == ["slow"]


def test_slow_during_faults_and_grace_is_excused():
    b = _steady()
    b.fault("pause-redis", "redis", 20, 25)
    b.submit("slow1", at=22, latency=3.0)
    b.submit("slow2", at=25.5, latency=0.4)  # within the 1 s grace after the fault
    r = availability.check(b.build(), CFG)
    assert r.valid is True
    assert r.stats["in_faults"] == 2


def test_failure_outside_faults_is_unavailable():
    b = _steady()
    b.submit(None, at=30, phase="fail")
    b.submit(None, at=31, phase="info")
    b.submit(None, at=32, latency=None)  # never completed
    r = availability.check(b.build(), CFG)
    assert r.valid is False
    assert r.kinds() == ["unavailable"] * 3
    assert r.stats["error_rate_outside_faults"] == 3 / 13


def test_failures_in_faults_are_reported_not_failed_by_default():
    b = _steady()
    b.fault("cut-link", "link:api-redis", 20, 22)
    b.submit(None, at=20.5, phase="fail").submit(None, at=21, phase="info")
    r = availability.check(b.build(), CFG)
    assert r.valid is True
    assert r.stats["error_rate_in_faults"] == 1.0
    strict = CheckConfig(latency_min_samples=5, error_rate_max_in_faults=0.5)
    assert availability.check(b.build(), strict).kinds() == ["error-rate-in-faults"]


def test_open_fault_window_lasts_to_the_end():
    b = _steady()
    b.fault("kill-worker", "worker-0", 20)
    b.submit(None, at=50, phase="fail")
    assert availability.check(b.build(), CFG).valid is True


FAIL_FAST = CheckConfig(latency_min_samples=5, latency_p99_ms=100, fault_grace_s=1.0, answer_within_s=2.0)


def test_an_error_answered_quickly_during_an_outage_is_correct_for_a_fail_fast_target():
    b = _steady()
    b.fault("stop-redis", "redis", 20, 25)
    b.submit(None, at=21, latency=0.6, phase="info", error="500 Internal Server Error")
    r = availability.check(b.build(), FAIL_FAST)
    assert r.valid is True and r.stats["hung_in_faults"] == 0


def test_a_submit_left_hanging_during_a_fault_is_a_finding():
    b = _steady()
    b.fault("pause-redis", "redis", 20, 25)
    b.submit(None, at=21, latency=3.0, phase="info", error="ReadTimeout: timed out")
    b.submit("late", at=22, latency=2.5)  # answered, but past the bound
    r = availability.check(b.build(), FAIL_FAST)
    assert r.valid is False
    assert r.kinds() == ["hung", "hung"]
    assert "got no answer" in r.findings[0].message and "2 s" in r.findings[0].message
    assert "accepted only after 2.50 s" in r.findings[1].message


def test_no_bound_declared_means_no_hang_check():
    b = _steady()
    b.fault("pause-redis", "redis", 20, 25)
    b.submit(None, at=21, latency=3.0, phase="info", error="ReadTimeout: timed out")
    assert availability.check(b.build(), CFG).valid is True


def _read(b, task_id, code, at, unparseable=False):
    value = {"status_code": code, **({"unparseable": True} if unparseable else {})}
    return b.op("status", at=at, phase="info", task_id=task_id, value=value, error="Internal Server Error")


def test_status_reads_failing_outside_faults_are_one_finding_per_task():
    b = _steady()
    b.submit("bad", at=11, expect="FAILURE")
    for i in range(4):
        _read(b, "bad", 500, at=12 + i * 0.25)
    _read(b, "t1", 200, at=13, unparseable=True)
    r = availability.check(b.build(), CFG)
    assert r.valid is False
    assert [(f.kind, f.task_ids) for f in r.findings] == [("read-failed", ["bad"]), ("read-failed", ["t1"])]
    assert r.findings[0].evidence["count"] == 4
    assert "str(result)" in r.findings[0].message  # a FAILURE task: the likely cause is said
    assert "unparseable" in r.findings[1].message


def test_status_reads_failing_during_faults_are_counted_not_judged():
    b = _steady()
    b.fault("stop-redis", "redis", 20, 25)
    _read(b, "t1", 503, at=21)
    r = availability.check(b.build(), CFG)
    assert r.valid is True
    assert r.stats["failed_reads_in_faults"] == 1 and r.stats["failed_reads_outside_faults"] == 0
