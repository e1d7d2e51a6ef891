"""The sync task's message as kombu's Redis transport stores it, sent with one non-blocking LPUSH.

``send_task`` blocks its thread for a Redis round trip, so the API ran it in a thread pool; under load the two
thread hops (GIL hand-offs) alone outlasted the 50 ms publish bound and healthy submits went to the fallback.
Here Celery builds the task message (``app.amqp.create_task_message``, protocol 2, as ``send_task`` does) and
kombu serializes the body; the envelope around it is the one kombu's Redis transport LPUSHes for the default
exchange (routing key = queue): ``body`` base64, ``properties`` with ``delivery_info``, ``delivery_tag`` and
``priority``, into ``<queue>`` or ``<queue><sep><priority>``. ``tests/service/test_wire.py`` checks it
against a real ``send_task``'s message field by field, and real workers consume it in every service test.
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import re
import threading
import uuid

import redis.asyncio as aioredis
from kombu.serialization import dumps

from .celery_app import PRIORITY_STEPS, QUEUE, QUEUE_SEP, SYNC_TASK, app, redis_priority


def _queue_key(pri: int) -> str:
    """The list kombu keeps a message of Redis priority ``pri`` in: its step at or below it."""
    step = PRIORITY_STEPS[bisect.bisect(PRIORITY_STEPS, pri) - 1]
    return f"{QUEUE}{QUEUE_SEP}{step}" if step else QUEUE


def _build(task_id: str, priority: int, delivery_tag: str) -> tuple[str, str]:
    """(list key, payload), built the way Celery and kombu build it."""
    m = app.amqp.create_task_message(task_id, SYNC_TASK, [task_id], {}, ignore_result=True,
                                     reply_to=app.thread_oid)
    content_type, content_encoding, body = dumps(m.body, serializer="json")
    pri = redis_priority(priority)
    properties = {**m.properties, "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": QUEUE},
                  "priority": pri, "body_encoding": "base64", "delivery_tag": delivery_tag}
    raw = body if isinstance(body, bytes) else body.encode(content_encoding or "utf-8")
    message = {"body": base64.b64encode(raw).decode(), "content-encoding": content_encoding,
               "content-type": content_type, "headers": m.headers, "properties": properties}
    return _queue_key(pri), json.dumps(message)


# Building the message costs more than the rest of a submit (Celery's headers, saferepr, the origin's hostname
# lookup...), yet only the id, the priority and the delivery tag change between two submits of one thread. So
# each thread builds one message with placeholders and fills them in; an id that JSON or repr would quote
# differently than these placeholders takes the full build.
_ID, _TAG = "0c7a5e1d-wire-id-placeholder", "0c7a5e1d-wire-tag-placeholder"
_PRI = f'"{_ID}-priority"'  # a JSON number in the message: the quotes go too
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_templates: dict[tuple[int, int], tuple[str, list[str]]] = {}


def _template() -> tuple[str, list[str]]:
    """(body JSON with the id placeholder, the payload cut at its placeholders) for this process and thread."""
    where = (os.getpid(), threading.get_ident())
    t = _templates.get(where)
    if t is None:
        _, payload = _build(_ID, 0, _TAG)
        message = json.loads(payload)
        body = base64.b64decode(message["body"]).decode()
        message["body"] = _ID + "-body"
        message["properties"]["priority"] = json.loads(_PRI)
        cut = re.split(f"({_PRI}|{_ID}-body|{_ID}|{_TAG})", json.dumps(message))
        t = _templates[where] = (body, cut)
    return t


def encode(task_id: str, priority: int) -> tuple[str, str]:
    """(list key, payload) for the sync task of ``task_id`` at our ``priority`` (0..9, 9 most urgent)."""
    if not _PLAIN_ID.fullmatch(task_id):
        return _build(task_id, priority, str(uuid.uuid4()))
    body, cut = _template()
    pri = redis_priority(priority)
    fill = {_ID: task_id, _ID + "-body": base64.b64encode(body.replace(_ID, task_id).encode()).decode(),
            _TAG: str(uuid.uuid4()), _PRI: str(pri)}
    return _queue_key(pri), "".join(fill.get(part, part) for part in cut)


class AsyncSender:
    """LPUSHes task messages on the event loop (redis.asyncio), every socket operation bounded.

    The sends of one event-loop turn go out together, one LPUSH per list with all their messages (in order:
    kombu pops the oldest first). A burst of 100 submits sent 100 commands on 100 connections: two syscalls,
    a pooled connection and redis-py's command machinery each, where ten LPUSHes (one per priority) do."""

    def __init__(self, url: str, timeout_s: float, max_connections: int = 1024) -> None:
        # a connection per LPUSH in flight: a pool that runs out fails the publish (and trips the breaker)
        self.redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                             max_connections=max_connections, retry_on_timeout=False,
                                             health_check_interval=0)
        self._turn: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}  # list key -> (payload, its answer)
        self._pushing: set[asyncio.Task[None]] = set()

    async def send(self, task_id: str, priority: int) -> None:
        """Pushed when this returns; a caller that stops waiting (its bound) leaves its message in the push."""
        key, payload = encode(task_id, priority)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[None] = loop.create_future()
        if not self._turn:
            loop.call_soon(self._flush)
        self._turn.setdefault(key, []).append((payload, answer))
        await answer

    def _flush(self) -> None:
        turn, self._turn = self._turn, {}
        loop = asyncio.get_running_loop()
        for key, sends in turn.items():
            task = loop.create_task(self._push(key, sends))
            self._pushing.add(task)
            task.add_done_callback(self._pushing.discard)

    async def _push(self, key: str, sends: list[tuple[str, asyncio.Future[None]]]) -> None:
        try:
            await self.redis.lpush(key, *(payload for payload, _ in sends))
        except asyncio.CancelledError:  # closing: nobody hears a push that may not have landed as a success
            for _, answer in sends:
                answer.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each caller of this push hears of it
            for _, answer in sends:
                if not answer.done():
                    answer.set_exception(exc)
        else:
            for _, answer in sends:
                if not answer.done():
                    answer.set_result(None)

    async def warm(self, connections: int) -> None:
        """Open ``connections`` pooled connections at once (a burst of submits then pays no connect)."""
        await asyncio.gather(*(self.redis.execute_command("PING") for _ in range(connections)))

    async def close(self) -> None:
        if self._pushing:
            await asyncio.gather(*self._pushing, return_exceptions=True)
        close = getattr(self.redis, "aclose", None) or self.redis.close  # redis-py < 5 has no aclose
        await close()
