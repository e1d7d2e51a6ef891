"""Reads the target's declared health endpoint during a run, so the ``health`` checker can tell whether it said
the truth: degraded while the broker was away, healthy again after the heal.

Only targets whose ``http.health`` declares ``degraded`` or ``healthy`` fields are watched. Each read is an
ordinary op (``f = "health"``) of one process of its own, with the declared fields' values, in the same history
as the workload's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from chaos.history import Recorder
from chaos.http_client import classify
from chaos.target import Target

PROCESS = 1_000_000  # far above the workload's processes (one per plan, one per probe)


class HealthWatch:
    """A thread reading ``health.path`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, target: Target, base_url: Callable[[], str], recorder: Recorder,
                 interval: float = 0.5, timeout: float = 2.0) -> None:
        http = target.http
        self.health = http.health if http is not None else None
        self.token = http.token if http is not None else None
        self.base_url = base_url
        self.recorder = recorder
        self.interval = interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def wanted(self) -> bool:
        return self.health is not None and bool(self.health.degraded or self.health.healthy)

    def start(self) -> None:
        if self.wanted:
            self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1)

    def read(self, client: httpx.Client) -> None:
        """One health read, recorded with the declared fields it answered."""
        assert self.health is not None
        fields = [*self.health.degraded, *self.health.healthy]
        inv = self.recorder.invoke(PROCESS, "health")
        try:
            r = client.get(self.base_url() + self.health.path, timeout=self.timeout)
        except httpx.HTTPError as exc:
            self.recorder.complete(inv, classify(exc), error=f"{type(exc).__name__}: {exc}")
            return
        try:
            data: Any = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.recorder.info(inv, value={"status_code": r.status_code, "unparseable": True}, error=r.text[:200])
            return
        self.recorder.ok(inv, value={"status_code": r.status_code,
                                     "fields": {f: _text(data.get(f)) for f in dict.fromkeys(fields)}})

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with httpx.Client(headers=headers) as client:
            while not self._stop.is_set():
                self.read(client)
                self._stop.wait(self.interval)


def _text(value: Any) -> str | None:
    return None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
