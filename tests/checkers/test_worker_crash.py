"""worker_crash: a worker whose log says Celery gave up fails the run, in plain words, with the known cause."""

from chaos.checkers import worker_crash
from chaos.checkers.result import UNKNOWN

from .builder import clean

CRASH = ("[2026-12-03 12:59:48,325: CRITICAL/MainProcess] Unrecoverable error: "
         "AttributeError(\"'NoneType' object has no attribute 'hostname'\")")


def test_a_worker_that_gave_up_fails_the_run_with_the_known_cause():
    h = clean().worker_logs(**{"worker-0": {"alive": True, "fatal": [CRASH], "times": 2, "restarted": True},
                               "worker-1": {"alive": True, "fatal": [], "times": 0}}).build()
    r = worker_crash.check(h)
    assert r.valid is False and r.kinds() == ["crashed"]
    msg = r.findings[0].message
    assert msg.startswith("worker-0 stopped on its own during the run (2 times): Celery logged \"Unrecoverable")
    assert "at 2026-12-03 12:59:48" in msg and "final heal started it again; in production only a supervisor" in msg
    assert "unacked" in msg and "supervisor" in msg and "Channel._connparams" in msg
    assert r.stats == {"workers_read": 2, "crashed": 1}


def test_an_unknown_fatal_error_points_at_the_log():
    line = "[2026-12-03 13:00:00,000: CRITICAL/MainProcess] Unrecoverable error: KeyError('x')"
    h = clean().worker_logs(**{"worker-0": {"alive": True, "fatal": [line], "times": 1}}).build()
    msg = worker_crash.check(h).findings[0].message
    assert "KeyError('x')" in msg and "no longer consuming" in msg and "traceback" in msg


def test_quiet_logs_pass_and_no_logs_abstain():
    assert worker_crash.check(clean().worker_logs(**{"worker-0": {"alive": True, "fatal": []}}).build()).valid
    r = worker_crash.check(clean().build())
    assert r.valid == UNKNOWN and r.stats["applicable"] is False


def test_fatal_lines_are_found_in_any_log_format():
    log = "\n".join(["[x: INFO/MainProcess] Connected", CRASH, "Traceback (most recent call last):",
                     "worker: Unrecoverable error: RuntimeError('y')"])
    assert worker_crash.fatal_lines(log) == [CRASH, "worker: Unrecoverable error: RuntimeError('y')"]
