"""The bench's wait: the framework's one ``wait_until``, with a bench section's failure as its timeout error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaos.waiting import wait_until


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """``pred``'s first truthy value; TimeoutError (the section fails) after ``timeout``; errors are "not yet"."""
    return wait_until(pred, timeout, interval, what=what, ignore=Exception, error=TimeoutError)
