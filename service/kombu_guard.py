"""A guard for a reconnect crash in Celery 5.7 / kombu 5.7 on Redis: the worker must not die of a broker blink.

On a broker connection loss Celery's consumer collects the connection (which closes the transport) and then
closes it again. If the first close was cut short while a BRPOP was outstanding, the second one closes the
channel for real and restores the unacknowledged (prefetched) messages; with the transport already closed, the
redis channel then reads its connection parameters from ``None``. The ``AttributeError`` is not a connection
error, so it escapes Celery's ``ignore_errors`` and the worker stops with "Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")", its tasks left in kombu's unacked set.

Here that read raises the redis ``ConnectionError`` it stands for: Celery swallows it and reconnects, as it
does when Redis refuses the restore. The messages stay in the unacked set; the ledger's sweeper (a stale
PENDING/RETRY task is published again) and kombu's visibility timeout bring them back.
"""
from __future__ import annotations

import functools
import logging

import redis

log = logging.getLogger("service.kombu_guard")


def install() -> bool:
    """Guard kombu's redis channel, once per process; False where this kombu has no such method to guard."""
    from kombu.transport import redis as transport

    original = getattr(transport.Channel, "_connparams", None)
    if original is None or getattr(original, "guarded", False):
        return original is not None

    @functools.wraps(original)
    def _connparams(self, *args, **kwargs):
        if getattr(self.connection, "client", True) is None:  # the transport was closed under this channel
            log.warning("broker connection already closed: its unacknowledged messages stay in the unacked set")
            raise redis.exceptions.ConnectionError("the broker connection was closed before the channel")
        return original(self, *args, **kwargs)

    _connparams.guarded = True  # type: ignore[attr-defined]
    transport.Channel._connparams = _connparams
    return True
