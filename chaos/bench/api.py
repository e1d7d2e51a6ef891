"""The target's HTTP contract as the bench uses it: submit bodies, task ids, modes, statuses, the ledger."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from chaos.bench.config import BenchPlan
from chaos.bench.polling import wait_for
from chaos.errors import ChaosError
from chaos.target import TERMINAL_STATES, HttpContract, TaskKind


class TargetApi:
    """The target's HTTP contract as the benchmark uses it (loopback only)."""

    def __init__(self, cluster: Any, bench: BenchPlan) -> None:
        self.c = cluster
        http = cluster.target.http
        assert isinstance(http, HttpContract), "the bench needs a target with an HTTP API"
        self.http: HttpContract = http
        self.plan = bench
        self.auth = {"Authorization": f"Bearer {http.token}"} if http.token else {}
        self.admin = {"Authorization": f"Bearer {http.ledger_token}"} if http.ledger_token else {}
        self.client = httpx.Client(timeout=10.0)
        self.accepted = 0  # submits answered 2xx (the memory section's count of tasks through the API)

    @property
    def url(self) -> str:
        return str(self.c.api_url)

    @property
    def has_ledger(self) -> bool:
        return bool(self.http.ledger_path)

    def body(self, kind: TaskKind | None = None) -> dict[str, Any]:
        """The kind's submit body, with the middle priority when the target takes one."""
        body = dict((kind or self.plan.kind).body)
        if self.http.priority_field:
            lo, hi = self.http.priority_range
            body[self.http.priority_field] = (lo + hi + 1) // 2
        return body

    def task_id(self, reply: Mapping[str, Any]) -> str:
        tid = reply.get(self.http.task_id_field)
        if not tid:
            raise ChaosError(f"the submit reply has no {self.http.task_id_field!r}: {str(dict(reply))[:200]}")
        return str(tid)

    def mode(self, reply: Mapping[str, Any]) -> str | None:
        """How a submit was accepted (``mode_field``), None when the target does not say."""
        return str(reply.get(self.http.mode_field)) if self.http.mode_field else None

    def submit(self, kind: TaskKind | None = None) -> dict[str, Any]:
        r = self.client.request(self.http.submit_method, self.url + self.http.submit_path, json=self.body(kind),
                                headers=self.auth)
        r.raise_for_status()
        self.accepted += 1
        return dict(r.json())

    def status(self, task_id: str) -> str | None:
        """The task's Celery state by the status path (None: no answer yet)."""
        r = self.client.get(self.url + self.http.status_path.format(task_id=task_id), headers=self.auth,
                            timeout=5.0)
        if r.status_code != 200:
            return None
        raw = r.json().get(self.http.status_field)
        return None if raw is None else self.http.canonical_status(raw)

    def ledger(self, since: float | None = None) -> list[dict[str, Any]]:
        if not self.http.ledger_path:
            raise ChaosError("this measure needs the target's ledger probe (http.ledger_path)")
        params = {"since": since} if since is not None else None
        r = self.client.get(self.url + self.http.ledger_path, params=params, headers=self.admin, timeout=30.0)
        r.raise_for_status()
        return list(r.json()["tasks"])

    def finish_times(self, ids: Iterable[str], since: float, timeout: float = 300.0,
                     success_only: bool = False) -> list[float]:
        """Each of ``ids``' finish (epoch, its last execution's ``finished_at`` in the ledger), once all finished."""
        want = set(ids)
        states = ("SUCCESS",) if success_only else TERMINAL_STATES

        def finished() -> list[dict[str, Any]] | None:
            mine = [t for t in self.ledger(since) if t["task_id"] in want]
            if len(mine) == len(want) and all(t["state"] in states for t in mine):
                return mine
            return None

        # read every second: the ledger read costs the target CPU its workers want, and the times are its own
        tasks = wait_for(finished, timeout, f"{len(want)} task(s) to finish", 1.0)
        return [max(float(e["finished_at"]) for e in t["executions"] if e.get("finished_at")) for t in tasks
                if any(e.get("finished_at") for e in t["executions"])]

    def finished_at(self, ids: Iterable[str], since: float, timeout: float = 300.0,
                    success_only: bool = False) -> float:
        """Epoch when the last of ``ids`` finished: the ledger's ``finished_at``, else when a status read saw it.

        Without a ledger the status of the oldest unfinished task is read every 50 ms, in submission order; the
        time a task is seen terminal is an upper bound of its finish.
        """
        order = list(dict.fromkeys(ids))
        states = ("SUCCESS",) if success_only else TERMINAL_STATES
        if self.has_ledger:
            return max(self.finish_times(ids, since, timeout, success_only))
        last = 0.0
        deadline = time.monotonic() + timeout
        while order:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {len(order)} task(s) to finish")
            try:
                while order and self.status(order[0]) in states:
                    last = time.time()
                    order.pop(0)
            except httpx.HTTPError:
                pass
            if order:
                time.sleep(0.05)
        return last

    def close(self) -> None:
        self.client.close()
