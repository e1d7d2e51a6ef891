"""Plain words for findings: where a task most likely went, and the Celery setting that usually fixes it.

The checkers know what a client saw and which faults ran; they cannot see inside the broker (that is the
inspector's job), so these hints name the likely causes in the order Celery's defaults make them likely, and
say "most likely" where the history alone cannot prove it.
"""

from __future__ import annotations

from collections.abc import Iterable

WORKER_ENDING = ("kill-worker", "kill-child", "quit-worker", "term-worker", "restart-worker", "scale-down")
BROKER_FAULTS = ("stop-redis", "kill-redis", "restart-redis", "flushall", "pause-redis", "client-kill")
LINK_FAULTS = ("cut", "down", "reset-peer", "latency", "slicer", "bandwidth")


def stuck_hint(status: str | None, faults: Iterable[str]) -> str:
    """Why an accepted task may still be non-terminal after the heal, given the faults that ran."""
    names = set(faults)
    if names & set(WORKER_ENDING):
        where = ("It was most likely running on a worker that the fault ended"
                 if status == "STARTED" else "It was most likely running on, or prefetched by, a worker that the "
                                             "fault ended (without task_track_started a running task reads PENDING)")
        return (f"{where}. With task_acks_late off (Celery's default) a message is acknowledged when its task "
                f"starts, so a running task is gone: set task_acks_late=True and task_reject_on_worker_lost=True. "
                f"A prefetched message, or one under acks_late, waits in kombu's unacked set until the "
                f"visibility_timeout (1 hour by default) has passed and a restore sweep finds it (every "
                f"unacked_restore_interval x unacked_restore_throttle seconds, about 100 s by default): set a "
                f"visibility_timeout longer than your longest task but shorter than the time you can wait, and "
                f"lower the sweep.")
    if names & set(BROKER_FAULTS):
        return ("It was most likely taken by a worker when the broker connection broke: a task running then "
                "was acknowledged when it started (task_acks_late off, Celery's default) and its result could "
                "not be stored, and prefetched messages wait in kombu's unacked set until the visibility_timeout "
                "(1 hour by default). Other causes: a broker restarted without persistence drops its queues "
                "(Redis appendonly), and a worker without broker_connection_retry stops consuming.")
    if names & set(LINK_FAULTS):
        return ("It most likely went down with a worker's broker connection: kombu's Redis transport pops a "
                "message (BRPOP) before it records it as unacknowledged, so a connection that breaks in between "
                "loses it, whatever the settings; messages already taken wait in the unacked set until the "
                "visibility_timeout; or the connection stayed dead after the fault healed (no socket timeout or "
                "keepalive). Set broker_transport_options socket_timeout / socket_keepalive, a short "
                "visibility_timeout, and re-publish tasks left PENDING.")
    return ("No fault explains it: the task may be waiting on a queue no worker consumes, or stuck in the "
            "worker (a deadlock, a task without a time limit).")


def failure_hint(error: object) -> str:
    """Why a task that should succeed ended FAILURE, from the error the client was shown."""
    text = str(error or "")
    if "WorkerLostError" in text:
        return ("Celery failed it with WorkerLostError because the pool process running it was killed; "
                "with task_acks_late=True and task_reject_on_worker_lost=True it is requeued and runs again.")
    if "ConnectionError" in text or "Connection closed" in text or "OperationalError" in text:
        return ("It raised a broker or result-backend connection error while Redis was away: most likely the "
                "worker could not store its result (or the task's own Redis call failed) and Celery recorded "
                "FAILURE. Set result_backend_always_retry=True (with result_backend_max_retries) so a blink of "
                "Redis does not turn a success into a failure, and retry the task's own calls.")
    if "TimeLimitExceeded" in text or "SoftTimeLimitExceeded" in text:
        return "It hit a time limit: the fault slowed it past task_time_limit."
    if text:
        return f"The task raised {text[:200]}; a fault should not change a task's outcome."
    return "A fault should not change a task's outcome."


# What a location found by the broker inspector (chaos.inspector) means, and the usual fix.
LOCATION_FIX = {
    "gone": ("Its message was acknowledged (Celery acknowledges when a task starts unless task_acks_late is on) and "
             "the worker that had it died, or the connection broke between kombu's BRPOP and its unacked record: "
             "nothing will run it again. Set task_acks_late=True and task_reject_on_worker_lost=True, and "
             "re-publish tasks left PENDING."),
    "unacked": ("A worker took it and died (or lost its connection) without acknowledging it: set a "
                "visibility_timeout shorter than the time you can wait (and longer than your longest task) and a "
                "faster restore sweep (unacked_restore_interval, unacked_restore_throttle)."),
    "queued": ("No worker consumes that queue now: the workers exited after the broker came back "
               "(broker_connection_retry off), or none listens to that queue."),
    "held": ("A live worker prefetched it and has not started it: its pool is busy or stuck; lower "
             "worker_prefetch_multiplier, and give tasks a time limit."),
    "running": "It never finishes: give the task a time limit (task_time_limit) or look for a deadlock.",
    "finished": ("The result backend has a final state, but the client's last read did not show it: the status "
                 "endpoint reads a stale or different store."),
}


def location_hint(where: str) -> str:
    return LOCATION_FIX.get(where, "")

