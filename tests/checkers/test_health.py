from chaos.checkers import health
from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN

from .builder import HistoryBuilder

DECLARED = CheckConfig(health_degraded={"mode": "fallback"}, health_healthy={"mode": "celery"})


def _read(b, at, mode):
    return b.op("health", at=at, value={"status_code": 200, "fields": {"mode": mode}}, process=900)


def _outage(b):
    b.fault("stop-redis", "redis", 10, 14)
    return b


def test_truthful_health_passes():
    b = _outage(HistoryBuilder())
    for t, mode in ((9, "celery"), (10.5, "celery"), (11.5, "fallback"), (13, "fallback"), (16, "celery")):
        _read(b, t, mode)
    r = health.check(b.build(), DECLARED)
    assert r.valid is True
    assert r.stats["judged_degraded"] == 2 and r.stats["judged_healthy"] == 1  # 10.5 s is within the settle time


def test_health_saying_healthy_while_redis_is_down_lies():
    b = _outage(HistoryBuilder())
    _read(b, 12, "celery")
    r = health.check(b.build(), DECLARED)
    assert r.valid is False and r.kinds() == ["health-lies"]
    assert "mode='celery'" in r.findings[0].message and "stop-redis" in r.findings[0].message


def test_health_still_degraded_after_the_heal_is_stale():
    b = _outage(HistoryBuilder())
    _read(b, 20, "fallback")
    assert health.check(b.build(), DECLARED).kinds() == ["health-stale"]


def test_nothing_declared_or_nothing_judged_abstains():
    b = _outage(HistoryBuilder())
    _read(b, 12, "celery")
    r = health.check(b.build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False
    r = health.check(HistoryBuilder().build(), DECLARED)
    assert r.valid == UNKNOWN and r.stats["applicable"] is False
