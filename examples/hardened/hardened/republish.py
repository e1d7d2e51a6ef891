"""The one defence no Celery setting gives: re-publish a task whose message the Redis transport lost.

kombu's Redis transport takes a message with BRPOP (Redis removes it from the queue) and only then records it
in its unacked set. A connection reset or a worker SIGKILL between the two loses the message: it is in no queue
and in no unacked set, so neither acks_late nor the visibility timeout brings it back, and the task stays
PENDING forever. celery-chaos finds this in the network-reset and worker-sigkill scenarios.

The API keeps every accepted task in a Redis sorted set (id -> when it was last sent) with its arguments, and a
background thread re-sends, under the same task id, any task still PENDING well after the visibility timeout
would have brought it back. Tasks are idempotent here, so a task that was only slow to start and runs twice is
harmless (the app declares delivery = "at-least-once").
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

log = logging.getLogger(__name__)
SENT = "hardened:sent"  # zset: task id -> last send time
ARGS = "hardened:args"  # hash: task id -> JSON [task name, args]
AFTER_S = 12.0  # > visibility_timeout (10 s) + kombu's restore sweep (1 s)


class Republisher:
    def __init__(self, celery_app, redis_url: str) -> None:
        self.app = celery_app
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="republisher", daemon=True)

    def sent(self, task_id: str, name: str, args: list) -> None:
        """Remember an accepted task (called after its publish succeeded)."""
        with self.redis.pipeline() as p:
            p.hset(ARGS, task_id, json.dumps([name, args])).zadd(SENT, {task_id: time.time()}).execute()

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - Redis away, or kombu's OperationalError from send_task on
                # a pooled connection a reset broke: try again next second. (Catching only RedisError and OSError
                # let that OperationalError kill this thread in the gate's network-reset run, and the lost task it
                # was to re-send stayed PENDING: celery-chaos's lost/gone finding.)
                log.info("republisher: %s", exc)

    def sweep(self) -> None:
        for raw in self.redis.zrangebyscore(SENT, 0, time.time() - AFTER_S, start=0, num=100):
            task_id = raw.decode()
            state = self.app.AsyncResult(task_id).state
            if state != "PENDING":  # started, finished or revoked: the broker has done its part
                self.redis.pipeline().zrem(SENT, task_id).hdel(ARGS, task_id).execute()
                continue
            spec = self.redis.hget(ARGS, task_id)
            if spec is None:
                self.redis.zrem(SENT, task_id)
                continue
            name, args = json.loads(spec)
            log.warning("republisher: task %s still PENDING after %.0f s, sending it again", task_id, AFTER_S)
            self.app.send_task(name, args=args, task_id=task_id)
            self.redis.zadd(SENT, {task_id: time.time()})
