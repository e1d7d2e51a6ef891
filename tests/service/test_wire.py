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
