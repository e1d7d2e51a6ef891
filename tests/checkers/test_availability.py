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
