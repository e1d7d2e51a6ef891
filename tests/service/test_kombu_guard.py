"""service/kombu_guard.py: a channel closed after its transport (Celery 5.7's reconnect path) with unacked
messages must not raise AttributeError, which kills the worker; it raises a connection error Celery swallows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# In a process of its own: the guard patches kombu for the whole process, and this test process runs the
# framework's own kombu clients. Argument: "guarded" or "bare".
CLOSE_AFTER_TRANSPORT = r'''
import json, os, sys
from kombu import Connection, Queue

if sys.argv[1] == "guarded":
    from service.kombu_guard import install
    assert install()
c = Connection(os.environ["BROKER"])
q = Queue("guard-test")
with c.Producer() as p:
    p.publish({"n": 1}, routing_key="guard-test", declare=[q])
ch = c.default_channel
got = []
c.Consumer(q, callbacks=[lambda body, m: got.append(m)], channel=ch).consume()
c.drain_events(timeout=5)  # delivered, not acknowledged: the channel's QoS holds it
# The state Celery's on_connection_error_after_connected leaves: collect() closed the transport (its client is
# None) and the channel's pools were dropped, but the channel itself was not closed.
ch._disconnect_pools()
c._do_close_transport()
out = {"delivered": len(got)}
try:
    c.close()  # what Celery calls next, through ignore_errors (connection errors only)
    out["close"] = "ok"
except Exception as exc:
    out["close"] = type(exc).__name__
print(json.dumps(out))
'''


def _close_after_transport(st, mode: str) -> dict:
    env = {**st.env, "BROKER": st.redis.url}
    run = subprocess.run([sys.executable, "-c", CLOSE_AFTER_TRANSPORT, mode], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_channel_closed_after_its_transport_does_not_kill_the_worker(make_stack):
    st = make_stack(workers=0, api=False)  # Redis only
    bare = _close_after_transport(st, "bare")
    guarded = _close_after_transport(st, "guarded")
    assert guarded == {"delivered": 1, "close": "ok"}, f"guarded: {guarded}; unguarded kombu: {bare}"
    r = st.redis.client()
    try:  # the unacked message was not restored (Redis could not be asked): it is still in the unacked set
        assert r.hlen("unacked") >= 1
    finally:
        r.close()
