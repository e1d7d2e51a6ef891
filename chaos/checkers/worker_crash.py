"""Workers that gave up on their own: Celery logged "Unrecoverable error" during the run.

A fault may kill a worker; the app's own worker must never die of one. When an exception escapes Celery's
consumer (``WorkController.start``), the main process logs ``CRITICAL ... Unrecoverable error: <exception>``
and stops consuming for good. The run's final heal starts a dead worker again, and tasks may still finish on
the others, so without this checker the run would hide it; in production only a supervisor restarts it.

The evidence is the ``worker-logs`` probe (``chaos.runner.gather_evidence``): for each worker, the fatal lines
its log gained during the run. Without the probe the checker abstains.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chaos.checkers.config import CheckConfig
from chaos.checkers.result import UNKNOWN, CheckResult, Finding
from chaos.history import WORKER_LOG_PROBE, History

NAME = "worker_crash"
FATAL = "Unrecoverable error:"
_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")

# Fatal errors whose cause is known, by a piece of their text: what happened and what fixes it.
KNOWN: tuple[tuple[str, str], ...] = (
    ("object has no attribute 'hostname'",
     "This is Celery's reconnect path on Redis (seen with Celery 5.7 and kombu 5.7): on a broker connection loss "
     "with prefetched, unacknowledged messages, the consumer closes its channel after the transport is already "
     "closed, kombu's restore of those messages reads the connection's parameters from None, and the "
     "AttributeError escapes Celery's ignore_errors. The prefetched tasks wait in kombu's unacked set until the "
     "visibility_timeout (1 hour by default). Run workers under a supervisor that restarts them (systemd "
     "Restart=always, a container restart policy) and keep visibility_timeout as short as your longest task "
     "allows. The close is cut short by a read still outstanding on the channel (remote control's pub/sub "
     "one among them): worker_enable_remote_control=False avoids it where the app needs no revoke, inspect "
     "or ping; otherwise guard kombu's redis Channel._connparams to raise redis's ConnectionError when the "
     "transport is closed (Celery then reconnects)."),
)
GENERIC = ("An exception escaped Celery's consumer, so the worker stopped consuming for good; its traceback is "
           "in the worker's log (the report's logs/<scenario>/<worker>.log). Run workers under a supervisor "
           "that restarts them, and fix the cause the traceback names.")


def fatal_lines(log: str) -> list[str]:
    """The lines of a worker's log where Celery gave up (``Unrecoverable error: ...``)."""
    return [line.strip() for line in log.splitlines() if FATAL in line]


def hint(line: str) -> str:
    for needle, why in KNOWN:
        if needle in line:
            return why
    return GENERIC


def check(history: History, config: CheckConfig | None = None) -> CheckResult:
    config = config or CheckConfig()
    probe = history.probe(WORKER_LOG_PROBE)
    if probe is None or not isinstance(probe.value, Mapping):
        return CheckResult(NAME, UNKNOWN, [], {"applicable": False,
                                               "undecided": "no worker logs were read after the run"})
    crashed: dict[str, Any] = {w: v for w, v in probe.value.items() if isinstance(v, Mapping) and v.get("fatal")}
    findings = []
    for worker, seen in sorted(crashed.items())[:config.max_evidence]:
        line = str(seen["fatal"][-1])
        reason = line[line.index(FATAL):] if FATAL in line else line
        stamp = _TIME.match(line)
        when = f" at {stamp.group(1)}" if stamp else ""
        times = int(seen.get("times") or len(seen["fatal"]))
        again = f" ({times} times)" if times > 1 else ""
        state = ("The run's final heal started it again; in production only a supervisor would"
                 if seen.get("restarted") else "Its process was still there at the end, no longer consuming"
                 if seen.get("alive") else "It was not running at the end: only a supervisor would start it again")
        findings.append(Finding(NAME, "crashed", [], (
            f"{worker} stopped on its own during the run{again}: Celery logged \"{reason}\"{when}. {state}. "
            f"{hint(line)}"), {"worker": worker, **dict(seen)}))
    stats = {"workers_read": len(probe.value), "crashed": len(crashed)}
    return CheckResult(NAME, not crashed, findings, stats)
