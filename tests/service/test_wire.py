"""The API's own LPUSH of a task message (service/wire.py) is the message send_task would have sent, and the
sweeper reads its id back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

COMPARE = r'''
import json, sys
import redis
from service.celery_app import QUEUE, SYNC_TASK, app, redis_priority
from service.sweeper import _msg_id
from service.wire import encode

r = redis.Redis.from_url(app.conf.broker_url)
out = {}
for priority in (0, 5, 9):
    r.flushdb()
    tid = f"t-{priority}"
    app.send_task(SYNC_TASK, args=[tid], task_id=tid, queue=QUEUE, routing_key=QUEUE,
                  priority=redis_priority(priority), ignore_result=True, retry=False)
    [real_key] = [k.decode() for k in r.keys(QUEUE + "*")]
    key, payload = encode(tid, priority)
    raw = r.lindex(real_key, 0)
    out[priority] = {"real_key": real_key, "key": key, "real": json.loads(raw), "ours": json.loads(payload),
                     # the sweeper's id of a queued message and of an unacked entry ([message, exchange, key])
                     "ids": [_msg_id(raw), _msg_id(payload), _msg_id(json.dumps([json.loads(raw), "", QUEUE]))],
                     "tid": tid}
print(json.dumps(out))
'''


@pytest.mark.slow
def test_our_task_message_is_the_one_send_task_sends(make_stack):
    st = make_stack(workers=0, api=False)  # Redis only
    run = subprocess.run([sys.executable, "-c", COMPARE], env=st.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    for priority, got in json.loads(run.stdout).items():
        assert got["key"] == got["real_key"], priority
        assert got["ids"] == [got["tid"]] * 3, priority
        real, ours = got["real"], got["ours"]
        for m in (real, ours):  # per message: a fresh uuid each
            m["properties"].pop("delivery_tag")
            m["headers"].pop("origin", None)
        assert ours == real, priority


@pytest.mark.parametrize("task_id", ["3f0c1a2e-9b7d-4c1e-8f00-123456789abc", "it's", 'a"b\\c', "día", "x" * 200])
def test_the_filled_in_message_is_the_one_celery_builds(task_id):
    """Each thread fills placeholders into one message Celery built; any id (quoted or not) gives the message
    the full build gives, byte for byte but the delivery tag."""
    from service.wire import _build, encode

    for priority in (0, 5, 9):
        key, payload = encode(task_id, priority)
        ours = json.loads(payload)
        want_key, want = _build(task_id, priority, ours["properties"]["delivery_tag"])
        assert key == want_key and ours == json.loads(want)


BATCH = r'''
import asyncio, json, socket
import redis
from service.celery_app import app, redis_priority
from service.wire import AsyncSender, _queue_key
from service.sweeper import _msg_id

url = app.conf.broker_url
r = redis.Redis.from_url(url)
r.flushdb()
r.config_resetstat()


async def burst():
    sender = AsyncSender(url, 0.5)
    try:
        # 30 submits in one turn of the loop (a burst), then 3 more one at a time
        await asyncio.gather(*(sender.send(f"t-{i}", i % 3) for i in range(30)))
        for i in range(30, 33):
            await sender.send(f"t-{i}", 0)
    finally:
        await sender.close()

asyncio.run(burst())
lpush = r.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0)
# kombu pops from the tail: the order a worker receives each list in
order = {str(p): [_msg_id(m) for m in reversed(r.lrange(_queue_key(redis_priority(p)), 0, -1))] for p in range(3)}

with socket.socket() as s:  # a port nothing listens on: every caller of the push hears of the failure
    s.bind(("127.0.0.1", 0))
    dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"


async def refused():
    sender = AsyncSender(dead, 0.5)
    try:
        return [type(x).__name__ for x in
                await asyncio.gather(*(sender.send(f"d-{i}", 0) for i in range(5)), return_exceptions=True)]
    finally:
        await sender.close()

print(json.dumps({"lpush": lpush, "order": order, "refused": asyncio.run(refused())}))
'''


@pytest.mark.slow
def test_the_sends_of_one_turn_go_out_as_one_lpush_per_list_in_order(make_stack):
    """A burst of submits is one LPUSH per priority list, each list in the order the submits came (the order a
    worker takes them); a lone send is its own LPUSH; a push that fails fails each of its callers."""
    st = make_stack(workers=0, api=False)  # Redis only
    run = subprocess.run([sys.executable, "-c", BATCH], env=st.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout)
    assert got["lpush"] == 3 + 3, got["lpush"]  # three lists in the burst, then three lone sends
    want: dict[str, list[str]] = {"0": [], "1": [], "2": []}
    for i in range(33):
        want[str(i % 3 if i < 30 else 0)].append(f"t-{i}")
    assert got["order"] == want
    assert got["refused"] == ["ConnectionError"] * 5, got["refused"]
