"""One way to wait: poll a predicate until it holds or a timeout passes.

Every "is it up yet / is it gone yet" in the framework is this loop; having one keeps their timeouts, intervals
and messages alike, and leaves the callers saying only *what* they wait for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from chaos.errors import ClusterError

T = TypeVar("T")


class WaitTimeout(ClusterError):
    """A wait ran out of time (a ``ClusterError``: the stack did not do what it was told in time)."""


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, *, what: str = "a condition",
               ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
               error: type[Exception] | None = WaitTimeout) -> T | bool:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and return that.

    Exceptions of the ``ignore`` types count as "not yet" (a server that does not listen yet refuses). When the
    ``timeout`` passes, ``error`` is raised with ``what`` and the last ignored exception in its message, or
    False is returned when ``error`` is None. The predicate is always called at least once.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last, result = exc, None
        else:
            last = None
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    if error is None:
        return False
    detail = f" (last: {type(last).__name__}: {last})" if last is not None else ""
    raise error(f"timed out after {timeout:g} s waiting for {what}{detail}")
