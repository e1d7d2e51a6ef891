"""service/sweeper.py's BrokerView reads a queue list again only where it grew: after any mix of pushes, pops,
restores and messages lost (as a Redis restart loses them), its queued ids must be exactly what the lists hold."""

from __future__ import annotations

import random

import pytest

from service.celery_app import QUEUE
from service.sweeper import BrokerView, _msg_id, queue_keys
from service.wire import encode


def _truth(r) -> set[str]:
    return {i for key in queue_keys() for raw in r.lrange(key, 0, -1) if (i := _msg_id(raw))}


def _step(r, rnd: random.Random, n: int) -> str:
    """One change to the queue lists, as producers, workers, kombu and a Redis restart make them."""
    op = rnd.choice(["push", "push", "push", "pop", "restore", "pop-restore", "lose-newest", "flush", "none"])
    if op == "push":  # the API's LPUSH (several at once, at several priorities)
        for j in range(rnd.randint(1, 5)):
            key, payload = encode(f"t-{n}-{j}", rnd.randint(0, 9))
            r.lpush(key, payload)
    elif op == "pop":  # a worker takes the oldest
        r.rpop(rnd.choice(queue_keys()))
    elif op == "restore":  # kombu restores a delivered message at the tail, to be consumed next
        key, payload = encode(f"back-{n}", 5)
        r.rpush(key, payload)
    elif op == "pop-restore":  # between two looks: a worker took the oldest, kombu restored another message
        r.rpop(QUEUE)
        r.rpush(QUEUE, encode(f"other-{n}", 0)[1])
    elif op == "lose-newest":  # AOF everysec: a restart drops the last pushes; new ones arrive after it
        key = QUEUE
        r.lpop(key, rnd.randint(1, 3))
        for j in range(rnd.randint(1, 3)):
            r.lpush(key, encode(f"after-{n}-{j}", 0)[1])
    elif op == "flush":  # a restart without persistence
        r.delete(*queue_keys())
    return op


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_queued_ids_are_what_the_lists_hold(make_stack, seed):
    st = make_stack(workers=0, api=False)  # Redis only
    r = st.redis.client()
    view = BrokerView(st.redis.url)
    rnd = random.Random(seed)
    try:
        r.delete(*queue_keys())
        ops = []
        for n in range(150):
            ops.append(_step(r, rnd, n))
            queued, _ = view.snapshot(recent=5.0)
            assert queued == _truth(r), f"after {ops[-8:]} (step {n}, seed {seed})"
        assert view.reads["new"] > view.reads["whole"], view.reads  # most looks read only what was pushed
    finally:
        r.delete(*queue_keys())
        r.close()
        view.client.close()
