"""Handles of the faults a session injects by hand (``inject``) or schedules (``at``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from chaos.nemesis import FaultSpec


@dataclass
class FaultHandle:
    """A fault injected by ``inject`` (or ``fault``): pass it to ``heal``."""

    fault_id: str
    spec: FaultSpec
    injected_at: float  # seconds since the session started
    healed: bool = False


@dataclass
class ScheduledFault:
    """A fault ``at`` runs later in a thread of its own: ``state`` is pending, active, healed, cancelled or
    failed (``error`` says why)."""

    spec: FaultSpec
    state: str = "pending"
    error: str | None = None
    handle: FaultHandle | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it has healed (or was cancelled / failed); False on timeout."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def cancel(self) -> None:
        """Do not start it; if it is active, heal it now."""
        self._stop.set()
