"""The Celery application (broker settings, routing, priorities) and worker hooks.

Settings are chosen so the DB ledger, not the broker, is the source of truth;
see "Celery settings" in service/README.md for the reasoning behind each.
The worker main process heartbeats into the ``workers`` table (thread started
on ``worker_ready``) so /health can count live workers without ``inspect``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings

from celery import Celery, signals
from kombu import Queue

from . import kombu_guard
from .config import get_settings

SYNC_TASK = "service.sync_file"
QUEUE = "data_sync"
SCHEDULED_QUEUE = "scheduled"
PRIORITY_STEPS = list(range(10))
QUEUE_SEP = "\x06\x16"  # kombu's default priority sub-queue separator: "<queue>\x06\x16<step>"

log = logging.getLogger("service.worker")

_s = get_settings()
kombu_guard.install()  # a broker blink must not kill the worker (Celery 5.7's reconnect path: see the module)

app = Celery("data_sync", broker=_s.celery_broker_url, backend=_s.celery_result_backend,
             include=["service.tasks"])


def _restore_options(visibility: int) -> dict:
    """kombu re-queues unacked messages older than the visibility timeout only in periodic sweeps (every
    ``unacked_restore_interval`` s, scanning on every ``unacked_restore_throttle``-th call); keep the sweep
    period no longer than a short visibility timeout so the timeout really means redelivery."""
    interval = max(1, min(10, visibility))
    return {"unacked_restore_interval": interval,
            "unacked_restore_throttle": max(1, min(10, visibility // (10 * interval)))}


app.conf.update(
    task_acks_late=_s.task_acks_late,
    task_reject_on_worker_lost=_s.task_reject_on_worker_lost,
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_store_errors_even_if_ignored=False,
    task_track_started=False,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, routing_key=QUEUE), Queue(SCHEDULED_QUEUE, routing_key=SCHEDULED_QUEUE)],
    task_routes={SYNC_TASK: {"queue": QUEUE}},
    task_default_priority=4,  # redis scale: 0 high .. 9 low  (== our priority 5)
    task_publish_retry=True,
    task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    broker_connection_retry=_s.broker_connection_retry,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_transport_options={
        "visibility_timeout": _s.visibility_timeout_seconds,
        "priority_steps": PRIORITY_STEPS,
        "sep": QUEUE_SEP,
        "queue_order_strategy": "priority",
        "socket_keepalive": True,
        "health_check_interval": 10,
        **_restore_options(_s.visibility_timeout_seconds),
    },
    result_backend_transport_options={"visibility_timeout": _s.visibility_timeout_seconds},
    worker_cancel_long_running_tasks_on_connection_loss=False,
    worker_send_task_events=False,
    worker_enable_remote_control=True,
    broker_heartbeat=0,
)

# We deliberately keep running tasks alive on a broker connection loss (see README);
# silence the "will default to True in 6.0" nag for that explicit choice.
warnings.filterwarnings("ignore", message=r".*worker_cancel_long_running_tasks_on_connection_loss.*")


def configure_for_api() -> None:
    """Short socket timeouts and no connection retries for the API's publishing connection.

    With ``PUBLISH_TIMEOUT_MS=0`` (unbounded publish, a canary knob) kombu's defaults stay: no socket
    timeouts, connection retries as configured for workers."""
    if not _s.publish_bounded:
        return
    t = _s.api_broker_socket_timeout
    opts = dict(app.conf.broker_transport_options)
    opts.update(socket_timeout=t, socket_connect_timeout=t, max_retries=0, interval_start=0,
                interval_step=0, interval_max=0, connect_retries_timeout=t)
    app.conf.broker_transport_options = opts
    app.conf.broker_connection_timeout = t
    app.conf.broker_pool_limit = 32


def redis_priority(priority: int) -> int:
    """Our 0..9 (9 = most urgent) -> Redis transport's 0..9 (0 = served first)."""
    return 9 - max(0, min(9, int(priority)))


# ------------------------------------------------------------ heartbeats
class _Heartbeat(threading.Thread):
    def __init__(self, hostname: str) -> None:
        super().__init__(name="data-sync-heartbeat", daemon=True)
        self.hostname, self.pid, self.started = hostname, os.getpid(), time.time()
        self.stop = threading.Event()

    def run(self) -> None:
        from . import ledger
        while not self.stop.is_set():
            try:
                ledger.heartbeat(self.hostname, self.pid, self.started)
            except Exception:  # noqa: BLE001 - keep beating; /health just sees a gap
                log.warning("heartbeat write failed", exc_info=True)
            self.stop.wait(_s.heartbeat_interval_seconds)


_hb: _Heartbeat | None = None


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **_kw) -> None:
    global _hb
    hostname = getattr(sender, "hostname", None) or f"worker@{os.uname().nodename}"
    _hb = _Heartbeat(hostname)
    _hb.start()
    log.info("data-sync worker %s ready (pid %s)", hostname, os.getpid())


@signals.worker_shutdown.connect
def _stop_heartbeat(**_kw) -> None:
    if _hb is None:
        return
    _hb.stop.set()
    try:
        from . import ledger
        ledger.remove_worker(_hb.hostname, _hb.pid)
    except Exception:  # noqa: BLE001
        pass


# ------------------------------------------------------ Celery's own verdicts
@signals.task_failure.connect
def _mirror_failure(sender=None, task_id=None, exception=None, **_kw) -> None:
    """Celery gave up on a task (e.g. WorkerLostError without requeue, sent by the worker's main process):
    record it in the ledger so the status of record agrees with Celery, unless the task is already terminal."""
    if getattr(sender, "name", None) != SYNC_TASK or not task_id:
        return
    try:
        from . import ledger
        if ledger.fail_if_open(task_id, f"celery: {type(exception).__name__}: {exception}"):
            log.warning("task %s: Celery reported %r; recorded FAILURE", task_id, exception)
    except Exception:  # noqa: BLE001 - never break the worker's failure path
        log.exception("could not record Celery's failure verdict for %s", task_id)


@signals.task_revoked.connect
def _mirror_revoked(sender=None, request=None, **_kw) -> None:
    """Celery discarded a revoked task (its in-memory revoke list): record REVOKED unless already terminal."""
    task_id = getattr(request, "id", None)
    if getattr(sender, "name", None) != SYNC_TASK or not task_id:
        return
    try:
        from . import ledger
        ledger.revoke_if_open(task_id)
    except Exception:  # noqa: BLE001
        log.exception("could not record Celery's revocation of %s", task_id)
