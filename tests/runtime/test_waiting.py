"""``wait_until`` and ``free_port``: the one wait loop and the one port picker every backend uses."""

from __future__ import annotations

import socket
import time

import pytest

from chaos.cluster.ports import free_port
from chaos.errors import ClusterError
from chaos.waiting import WaitTimeout, wait_until


def test_returns_the_first_true_value():
    values = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(values), 5, 0.001) == "ready"


def test_times_out_with_what_it_waited_for():
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="timed out after 0.1 s waiting for the moon") as info:
        wait_until(lambda: False, 0.1, 0.01, what="the moon")
    assert isinstance(info.value, ClusterError)
    assert 0.1 <= time.monotonic() - t0 < 2


def test_or_answers_false_when_told():
    assert wait_until(lambda: False, 0.05, 0.01, error=None) is False


def test_ignored_errors_are_not_yet_and_named_at_the_timeout():
    calls = []

    def refuses():
        calls.append(1)
        raise ConnectionRefusedError("not listening")

    with pytest.raises(OSError, match="ConnectionRefusedError: not listening"):
        wait_until(refuses, 0.05, 0.01, ignore=OSError, error=OSError)
    assert len(calls) > 1


def test_other_errors_propagate_at_once():
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], 5, 0.01, ignore=OSError)


def test_a_zero_timeout_still_looks_once():
    assert wait_until(lambda: True, 0) is True


def test_free_port_is_free():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nobody else holds it
