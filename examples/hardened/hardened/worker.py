"""The same task with the well-known safe settings. Each one closes a failure mode celery-chaos finds in the
tutorial app (see ../tutorial and README.md)."""

import os
import time

from celery import Celery

celery = Celery(__name__)
celery.conf.broker_url = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
celery.conf.result_backend = os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/0")
celery.conf.update(
    # A message is acknowledged when the task is done, not when a worker takes it: a worker killed mid-task
    # leaves it in the broker, and another worker runs it.
    task_acks_late=True,
    # A pool child killed mid-task: requeue the task instead of failing it with WorkerLostError.
    task_reject_on_worker_lost=True,
    # One message per pool slot: a dying worker takes no prefetched backlog along.
    worker_prefetch_multiplier=1,
    # Unacknowledged messages of a dead worker come back after 10 s (Celery's default: 1 hour). Tasks here
    # take at most a second, well below it. kombu looks for them every interval x throttle seconds (10 x 10 by
    # default): every second here. Socket timeouts: a paused or unreachable Redis raises instead of blocking
    # the API's request (and the worker's connection) forever.
    broker_transport_options={"visibility_timeout": 10, "unacked_restore_interval": 1,
                              "unacked_restore_throttle": 1, "socket_timeout": 2, "socket_connect_timeout": 1},
    # The result backend's own retry policy (20 retries, 1 s apart, by default) holds a submit for as long as
    # Redis is away: retry once, quickly. Storing a result, in the worker, retries on its own (below).
    result_backend_transport_options={"socket_timeout": 2, "socket_connect_timeout": 1,
                                      "retry_policy": {"max_retries": 1, "interval_start": 0,
                                                       "interval_step": 0.2, "interval_max": 0.2}},
    redis_socket_timeout=2,
    redis_socket_connect_timeout=1,
    # A worker that finished a task while Redis blinked retries storing the result instead of turning the
    # success into a FAILURE(ConnectionError).
    result_backend_always_retry=True,
    result_backend_max_retries=20,
    # Keep reconnecting when Redis goes away (the default, said out loud), also at start-up.
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    # A bounded publish: one quick retry, then the API answers an error instead of hanging.
    task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
    task_track_started=True,
    # No broadcast channel: kombu 5.7's Redis transport crashes the worker (AttributeError 'hostname') when the
    # pub/sub connection of remote control breaks with Redis; this app needs no revoke, inspect or gossip.
    worker_enable_remote_control=False,
)


@celery.task(name="create_task")
def create_task(task_type: int) -> bool:
    if task_type < 0:
        raise ValueError(f"task type {task_type} is not a valid type")
    time.sleep(task_type * 0.1)
    return True
