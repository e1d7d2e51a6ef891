"""The workload client: submits, cancels and polls tasks through the target's HTTP API and records every op.

Each task plan is one Jepsen "process": its ops (submit, cancel, status polls, the final drain read) run one
after another, so every invoke has exactly one completion. Outcomes follow Jepsen: ``ok`` it happened, ``fail``
it certainly did not (a 4xx, a refused connection), ``info`` nobody knows (a timeout, a reset, a 5xx).

``BaseWorkload`` is the run (plans, cancels, polls, the drain) whatever the client speaks; ``Workload`` speaks
HTTP, ``chaos.celery_client.CeleryWorkload`` speaks Celery (``client = "celery"``, no API); ``for_cluster``
picks the one the target declares.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from chaos.errors import BadArguments
from chaos.history import Recorder
from chaos.http_client import HTTP_ERRORS, Answer, WireClient, classify, describe
from chaos.target import TERMINAL_STATES, Target

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster


@dataclass(frozen=True)
class TaskPlan:
    """One task of a workload: what to submit, when, and whether (and when) to cancel it."""

    kind: str
    priority: int = 5
    at: float = 0.0  # seconds after the start of the run
    cancel_after: float | None = None  # seconds after the submit was acknowledged
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskPlan:
        return cls(**d)


class BaseWorkload:
    """Runs task plans against a target; ``quiesce_deadline`` ends the polling (set by the runner).

    Subclasses implement the three operations (``submit``, ``status``, ``cancel``) and ``_session``, the client
    state one event loop shares; everything else (timing, cancels, polling, the drain) is common.
    """

    def __init__(self, target: Target, recorder: Recorder, *, concurrency: int = 10, request_timeout: float = 5.0,
                 poll_interval: float = 0.25) -> None:
        self.target = target
        self.recorder = recorder
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.quiesce_deadline = math.inf
        self.t0 = time.monotonic()  # the scenario's clock: reset once the client is ready (``started``)
        self.started = threading.Event()
        # every plan's submit has been answered (or given up): the runner's own looks wait for it, so a burst's
        # latency is the target's, not this process's heal, health and settling work sharing its CPU
        self.submitted = threading.Event()
        self._submits_left = 0
        # Keys are scoped to this run: a key reused by a later run must not resolve to an earlier run's task.
        self.key_scope = uuid.uuid4().hex[:8]
        self.acknowledged: dict[str, int] = {}  # task id -> process
        self.last_status: dict[str, str] = {}
        self.settled: set[str] = set()  # decided before the deadline (chaos.settle): no longer polled
        self._sem: asyncio.Semaphore | None = None

    # operations (per client) -------------------------------------------------------------------------------
    async def submit(self, process: int, plan: TaskPlan) -> str | None:
        raise NotImplementedError

    async def status(self, process: int, task_id: str, f: str = "status", probe: str | None = None) -> str | None:
        raise NotImplementedError

    async def cancel(self, process: int, task_id: str) -> bool:
        raise NotImplementedError

    def keyed(self, plan: TaskPlan) -> bool:
        """The plan's submit carries an idempotency key, so retrying a failed or unknown submit is safe."""
        return False

    def unfinished(self) -> list[str]:
        """Acknowledged tasks whose last read was not terminal (safe to call from another thread)."""
        last = dict(self.last_status)
        return [t for t in list(self.acknowledged) if last.get(t) not in TERMINAL_STATES]

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """The client and the concurrency bound every operation of one event loop shares."""
        self._sem = asyncio.Semaphore(self.concurrency)
        yield

    async def warm_up(self, connections: int) -> None:
        """Open the client's connections before the clock starts (none to open here)."""

    # the run ----------------------------------------------------------------------------------------------------
    def _refused(self, process: int) -> bool:
        """Did the last submit of ``process`` get a 4xx answer (a refusal that a retry will not change)?"""
        last = next((o for o in reversed(self.recorder.history().ops) if o.process == process), None)
        code = (last.value or {}).get("status_code") if last is not None else None
        return isinstance(code, int) and 400 <= code < 500

    async def _one(self, process: int, plan: TaskPlan) -> None:
        delay = self.t0 + plan.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task_id = None
        while task_id is None:
            task_id = await self.submit(process, plan)
            if task_id is not None or time.monotonic() > self.quiesce_deadline:
                break
            if not self.keyed(plan) or self._refused(process):
                self._submit_done()
                return  # not retried: without a key it may exist (info); a 4xx refusal will not change
            await asyncio.sleep(self.poll_interval)  # with a key, retrying is safe: that is what keys are for
        self._submit_done()
        if task_id is None:
            return
        acked = time.monotonic()
        cancelled = plan.cancel_after is None
        while time.monotonic() < self.quiesce_deadline and not (cancelled and task_id in self.settled):
            if not cancelled and time.monotonic() - acked >= (plan.cancel_after or 0.0):
                await self.cancel(process, task_id)
                cancelled = True
                continue
            status = await self.status(process, task_id)
            if status in TERMINAL_STATES and cancelled:
                return
            await asyncio.sleep(self.poll_interval)

    def _submit_done(self) -> None:
        self._submits_left -= 1
        if self._submits_left <= 0:
            self.submitted.set()

    async def run(self, plans: list[TaskPlan], unknown_probes: int = 0) -> None:
        """Run every plan to its end: terminal, or the quiesce deadline. Then one final ``drain`` read each.

        ``unknown_probes`` status reads of random ids nobody submitted must answer NOT_FOUND (never PENDING).
        """
        self._submits_left = len(plans)
        if not plans:
            self.submitted.set()
        try:
            async with self._session():
                try:
                    await self.warm_up(min(self.concurrency, len(plans) + unknown_probes))
                finally:
                    self.t0 = time.monotonic()  # the plans' ``at`` and the fault schedule count from here
                    self.started.set()
                probes = [self.status(len(plans) + i, str(uuid.uuid4()), probe="unknown-id")
                          for i in range(unknown_probes)]
                await asyncio.gather(*(self._one(i, p) for i, p in enumerate(plans)), *probes)
                await self._drain_reads()
        finally:
            self.submitted.set()

    async def _drain_reads(self) -> None:
        """One final ``drain`` status read of every acknowledged task."""
        await asyncio.gather(*(self.status(proc, tid, f="drain") for tid, proc in self.acknowledged.items()))

    def run_sync(self, plans: list[TaskPlan], unknown_probes: int = 0) -> None:
        asyncio.run(self.run(plans, unknown_probes))

    # one operation at a time (the stateful machine drives ops step by step) ------------------------------------
    def one(self, op: Any, *args: Any) -> Any:
        """Run one async operation (``self.submit``, ``self.cancel``, ``self.status``...) to completion."""
        async def go() -> Any:
            async with self._session():
                return await op(*args)

        return asyncio.run(go())

    def drain_sync(self, deadline: float) -> None:
        """Poll every acknowledged task until it is terminal or ``deadline`` passes, then one ``drain`` read each."""
        async def go() -> None:
            async with self._session():
                pending = set(self.acknowledged)
                while pending and time.monotonic() < deadline:
                    for tid in list(pending):
                        if await self.status(self.acknowledged[tid], tid) in TERMINAL_STATES:
                            pending.discard(tid)
                    await asyncio.sleep(self.poll_interval)
                await self._drain_reads()

        asyncio.run(go())


class Workload(BaseWorkload):
    """The HTTP client: the target's ``[tool.celery-chaos.target.http]`` contract, through ``base_url()``."""

    def __init__(self, target: Target, base_url: Callable[[], str], recorder: Recorder, *,
                 concurrency: int = 10, request_timeout: float = 5.0, poll_interval: float = 0.25) -> None:
        if target.http is None:
            raise BadArguments(f"target {target.name!r} has no [tool.celery-chaos.target.http] table")
        super().__init__(target, recorder, concurrency=concurrency, request_timeout=request_timeout,
                         poll_interval=poll_interval)
        self.http = target.http
        self.base_url = base_url
        self._client: WireClient | None = None

    def keyed(self, plan: TaskPlan) -> bool:
        return bool(plan.idempotency_key and self.http.idempotency_header)

    # plumbing -------------------------------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.http.token}"} if self.http.token else {}
        return {**h, **(extra or {})}

    async def _request(self, process: int, method: str, path: str, *, json: Any = None,
                       headers: dict[str, str] | None = None) -> Answer:
        """The answer, with the time the target took to give it on the wire (``chaos.http_client``)."""
        assert self._sem is not None and self._client is not None
        async with self._sem:
            return await self._client.request(process, method, self.base_url() + path, json_body=json,
                                              headers=headers)

    # operations -----------------------------------------------------------------------------------------------
    async def submit(self, process: int, plan: TaskPlan) -> str | None:
        kind = self.target.kind(plan.kind)
        body = dict(kind.body)
        if self.http.priority_field:
            body[self.http.priority_field] = plan.priority
        header = self.http.idempotency_header
        key = f"{self.key_scope}-{plan.idempotency_key}" if (plan.idempotency_key and header) else None
        extra = {header: key} if (key and header) else None
        inv = self.recorder.invoke(process, "submit", value={
            "kind": plan.kind, "priority": plan.priority, "expect": kind.expect,
            "idempotency_key": key, "units": kind.units})
        try:
            r = await self._request(process, self.http.submit_method, self.http.submit_path, json=body,
                                    headers=self._headers(extra))
        except HTTP_ERRORS as exc:
            self.recorder.complete(inv, classify(exc), error=describe(exc))
            return None
        lat = r.latency  # the target's answer time on the wire
        if r.status_code >= 500:
            self.recorder.info(inv, value={"status_code": r.status_code}, error=r.text[:300], latency=lat)
            return None
        if r.status_code >= 300:
            self.recorder.fail(inv, value={"status_code": r.status_code}, error=r.text[:300], latency=lat)
            return None
        data = r.json()
        task_id = str(data.get(self.http.task_id_field) or "")
        if not task_id:
            self.recorder.info(inv, value={"status_code": r.status_code, "body": data, "unparseable": True},
                               error=f"no {self.http.task_id_field!r} in the reply: {r.text[:200]}",
                               latency=lat)
            return None
        status = data.get(self.http.status_field)
        self.recorder.ok(inv, task_id=task_id, latency=lat, value={
            "task_id": task_id, "status": None if status is None else self.http.canonical_status(status),
            "mode": data.get(self.http.mode_field) if self.http.mode_field else None, "status_code": r.status_code})
        self.acknowledged.setdefault(task_id, process)
        return task_id

    async def status(self, process: int, task_id: str, f: str = "status",
                     probe: str | None = None) -> str | None:
        inv = self.recorder.invoke(process, f, task_id=task_id, value={"probe": probe} if probe else None)
        try:
            r = await self._request(process, "GET", self.http.status_path.format(task_id=task_id),
                                    headers=self._headers())
        except HTTP_ERRORS as exc:
            self.recorder.complete(inv, classify(exc), error=describe(exc))
            return None
        lat = r.latency  # the target's answer time on the wire
        if r.status_code == 404:
            self.recorder.ok(inv, value={"status": "NOT_FOUND", "status_code": 404}, latency=lat)
            self.last_status[task_id] = "NOT_FOUND"
            return "NOT_FOUND"
        if r.status_code != 200:
            phase = "info" if r.status_code >= 500 else "fail"
            self.recorder.complete(inv, phase, value={"status_code": r.status_code}, error=r.text[:300],
                                   latency=lat)
            return None
        data = r.json()
        raw = data.get(self.http.status_field)
        if raw is None:  # not JSON, or JSON without the status: the client learnt nothing
            self.recorder.info(inv, value={"status_code": r.status_code, "unparseable": True},
                               error=f"no {self.http.status_field!r} in the reply: {r.text[:200]}",
                               latency=lat)
            return None
        status = self.http.canonical_status(raw)
        result = data.get(self.http.result_field) if self.http.result_field else None
        self.recorder.ok(inv, latency=lat, value={"status": status, "status_code": 200, "raw_status": raw,
                                     "mode": data.get(self.http.mode_field) if self.http.mode_field else None,
                                     "attempts": data.get("attempts"),
                                     "error": data.get("error") or (str(result)[:300] if result is not None
                                                                    and status == "FAILURE" else None)})
        self.last_status[task_id] = status
        return status

    async def cancel(self, process: int, task_id: str) -> bool:
        if self.http.cancel is None:
            return False  # the target declares no cancel: scenarios that need one are n/a, nothing is sent
        inv = self.recorder.invoke(process, "cancel", task_id=task_id)
        try:
            r = await self._request(process, self.http.cancel.method,
                                    self.http.cancel.path.format(task_id=task_id), headers=self._headers())
        except HTTP_ERRORS as exc:
            self.recorder.complete(inv, classify(exc), error=describe(exc))
            return False
        lat = r.latency  # the target's answer time on the wire
        if r.status_code in (200, 202, 204):
            raw = r.json().get(self.http.status_field)
            self.recorder.ok(inv, value={"status": None if raw is None else self.http.canonical_status(raw),
                                         "status_code": r.status_code}, latency=lat)
            return True
        phase = "info" if r.status_code >= 500 else "fail"
        self.recorder.complete(inv, phase, value={"status_code": r.status_code}, error=r.text[:300],
                               latency=lat)
        return False

    async def warm_up(self, connections: int) -> None:
        """``connections`` kept-alive connections, opened at once with reads of the target's health (or ready)
        path, as a long-lived client's pool would hold them: a burst of 100 submits then measures the target,
        not 100 connects from this one client (the first burst took 3-6x the next on the wire). None of this
        is recorded; a target with neither path gets its connections on first use."""
        path = self.http.probe_path
        if not path:
            return

        async def read(slot: int) -> None:
            try:
                await self._client.request(slot, "GET", self.base_url() + path)  # type: ignore[union-attr]
            except HTTP_ERRORS:
                pass  # the API may be down before the run: the scenario will say so

        await asyncio.gather(*(read(slot) for slot in range(connections)))

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """The HTTP client (a connection per process slot) and the concurrency bound one event loop shares."""
        self._sem = asyncio.Semaphore(self.concurrency)
        async with WireClient(self.concurrency, self.request_timeout).open() as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None


def for_cluster(cluster: Cluster, recorder: Recorder, *, concurrency: int = 10,
                request_timeout: float = 5.0) -> BaseWorkload:
    """The client the target declares: HTTP through the API, or Celery through the broker (``client = "celery"``)."""
    target = cluster.target
    if target.client == "celery":
        from chaos.celery_client import CeleryWorkload

        return CeleryWorkload.for_cluster(cluster, recorder, concurrency=concurrency, request_timeout=request_timeout)
    return Workload(target, lambda: cluster.api_url, recorder, concurrency=concurrency,
                    request_timeout=request_timeout)
