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
                 if status == "STARTED" else "It most likely went down with a worker that the fault ended "
                                             "(it had taken the message, maybe only prefetched it)")
        return (f"{where}. With task_acks_late off (Celery's default) the message was acknowledged when the "
                f"worker took it, so it is gone: set task_acks_late=True and task_reject_on_worker_lost=True. "
                f"With acks_late on it waits in kombu's unacked set until the visibility_timeout (1 hour by "
                f"default) has passed and a restore sweep finds it (kombu scans every unacked_restore_interval "
                f"x unacked_restore_throttle seconds, about 100 s by default): set a visibility_timeout longer "
                f"than your longest task but shorter than the time you can wait, and lower the sweep.")
    if names & set(BROKER_FAULTS):
        return ("It was most likely among the messages a worker had already taken (prefetched: with "
                "task_acks_late off, Celery's default, they are acknowledged on receipt) when its broker "
                "connection broke; the worker drops them when it reconnects. Set task_acks_late=True and "
                "worker_prefetch_multiplier=1. Other causes: a broker restarted without persistence drops its "
                "queues (Redis appendonly), and a worker without broker_connection_retry stops consuming.")
    if names & set(LINK_FAULTS):
        return ("It most likely went down with a worker's broker connection: messages a worker has already "
                "taken (prefetched, acknowledged on receipt under Celery's default task_acks_late=False) are "
                "dropped when its connection breaks; or the connection stayed dead after the fault healed (no "
                "socket timeout or keepalive). Set task_acks_late=True, broker_transport_options "
                "socket_timeout / socket_keepalive, and keep broker_connection_retry on.")
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
