"""Write your own chaos tests: one object over a running cluster for submits, faults, waits and the verdict.

``ChaosSession`` is what the pytest fixture ``chaos`` gives a test. Everything it does lands in one history (a
``Recorder``): the client operations of the target's own client (HTTP or Celery, ``workload.for_cluster``) and
the fault windows of a ``Nemesis``. ``verdict()`` finishes the run the way the scenario runner does (final heal,
the API healthy again, every task polled until terminal or the target's ``timing.quiesce_s``, one final drain
read, the ledger when the target has one) and judges the history with every checker
(``check_all(history, for_target(CheckConfig(), target))``).

``run(plans, schedule)`` runs one whole generated example (a Hypothesis draw of ``task_plans`` and
``schedules``) as a scenario (``runner.run_scenario``) and returns its verdict; ``realtime`` is the Hypothesis
settings profile for such real-time runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from chaos.checkers.compose import check_all
from chaos.checkers.config import CheckConfig, for_target
from chaos.errors import BadArguments, ChaosError
from chaos.history import Meta, Recorder
from chaos.nemesis import FaultSpec, Nemesis, fault_kind
from chaos.session.client_loop import ClientLoop
from chaos.session.faults import FaultHandle, ScheduledFault
from chaos.session.realtime import in_hypothesis
from chaos.session.replay import describe_example, replay_command, safe_name
from chaos.session.verdict import ChaosVerdict
from chaos.target import TERMINAL_STATES, Target
from chaos.workload import BaseWorkload, TaskPlan, for_cluster

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster
    from chaos.report.model import ScenarioEntry
    from chaos.runner import ScenarioResult

T = TypeVar("T")

LINKS = ("workers_redis", "api_redis", "client_api")


@dataclass
class _Planned:
    """A submit as the replay needs it: its plan (a cancel's delay added later) and when it was acknowledged."""

    plan: TaskPlan
    task_id: str | None
    acked_at: float | None


class ChaosSession:
    """Submit tasks, inject faults, wait, and judge: one history per session (one test).

    ``cluster`` is a started ``Cluster`` (the fixture gives the session-wide one, healed and reset before each
    test). ``report_dir``: the history is written to ``report_dir/histories/<name>.jsonl`` and a replayable
    scenario file to ``report_dir/replay/<name>.json``. ``rerun``: the command that re-runs the test (said as
    the replay when there is no report directory). ``check``: thresholds (``CheckConfig``), completed with the
    target's promises by ``for_target``.
    """

    def __init__(self, cluster: Cluster, *, name: str = "chaos", report_dir: Path | None = None,
                 seed: int | None = None, check: CheckConfig | None = None, concurrency: int = 10,
                 request_timeout: float = 5.0, rerun: str | None = None, selector: str | None = None,
                 versions: dict[str, str] | None = None, shrink_runs: int = 4,
                 description: str = "") -> None:
        self.cluster = cluster
        self.target: Target = cluster.target
        self.name = safe_name(name)
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.seed = seed
        self.check = check or CheckConfig()
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self.rerun = rerun
        self.selector = selector
        self.shrink_runs = shrink_runs
        self.description = description or "a chaos test written with the chaos fixture"
        self.history_path = self.report_dir / "histories" / f"{self.name}.jsonl" if self.report_dir else None
        if self.history_path is not None and self.history_path.exists():
            self.history_path.unlink()
        self._started = time.monotonic()
        self.recorder = Recorder(self.history_path, Meta(
            scenario=self.name, seed=seed, target=self.target.name, versions=dict(versions or {}),
            config={"kind": "pytest", "description": self.description, "quiesce": self.target.timing.quiesce_s},
            replay=self._replay_for(self.name)))
        cluster.mark_worker_logs()  # the worker-logs evidence reads what the logs gain from here on
        self.workload: BaseWorkload = for_cluster(cluster, self.recorder, concurrency=concurrency,
                                                  request_timeout=request_timeout)
        self.nemesis = Nemesis(cluster, self.recorder)
        self.errors: list[str] = []
        self.last_verdict: ChaosVerdict | None = None
        self.runs: list[tuple[ScenarioResult, ChaosVerdict]] = []
        self._lock = threading.RLock()
        self._process = itertools.count(1)
        self._proc_locks: dict[int, asyncio.Lock] = {}
        self._loop: ClientLoop | None = None
        self._planned: list[_Planned] = []
        self._faults: list[FaultSpec] = []  # what was injected, for the replay file (duration set at heal)
        self._open: dict[str, FaultHandle] = {}
        self._scheduled: list[ScheduledFault] = []
        self._node_locks: dict[str, threading.Lock] = {}
        self._dirty = False  # something happened since the last quiesce
        self._quiesced = False
        self._activity = False  # the session's own history has ops or faults
        self._touched = False  # the cluster was used since the fixture reset it
        self._noted = 0
        self._failed_examples: dict[str, ChaosVerdict] = {}
        self._runs_after_failure = 0
        self._closed = False
        self._watch: Any = None  # a HealthWatch while the session is active

    # -- plumbing -------------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started, 2)

    def _call(self, process: int, make: Callable[[], Awaitable[T]]) -> T:
        """Run one workload operation of ``process`` on the client loop (one at a time per process)."""
        if self._closed:
            raise ChaosError("the chaos session is closed")
        with self._lock:
            if self._loop is None:
                self._loop = ClientLoop(self.workload)
            loop = self._loop

        async def locked() -> T:
            lock = self._proc_locks.setdefault(process, asyncio.Lock())
            async with lock:
                return await make()

        return loop.call(locked())

    def _process_of(self, task_id: str) -> int:
        known = self.workload.acknowledged.get(task_id)
        return known if known is not None else next(self._process)

    def _mark(self) -> None:
        self._dirty = self._activity = self._touched = True
        with self._lock:
            if self._watch is None and not self._closed:
                from chaos.health_watch import HealthWatch

                self._watch = HealthWatch(self.target, lambda: self.cluster.api_url, self.recorder)
                self._watch.start()  # only for targets that declare what their health endpoint says in an outage

    def _stop_watch(self) -> None:
        with self._lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()

    # -- the client --------------------------------------------------------------------------------------------
    def submit(self, kind: str, priority: int = 5, key: str | None = None) -> str | None:
        """Submit a task of a declared ``kind``; its id, or None when the submit failed or its fate is unknown
        (the history says which: ``fail`` or ``info``). ``key`` is an idempotency key (sent when the target
        declares ``idempotency_header``)."""
        self.target.kind(kind)  # an undeclared kind is one clear sentence
        process = next(self._process)
        plan = TaskPlan(kind, priority=priority, at=self._elapsed(), idempotency_key=key)
        self._mark()
        task_id = self._call(process, lambda: self.workload.submit(process, plan))
        with self._lock:
            self._planned.append(_Planned(plan, task_id, time.monotonic() if task_id else None))
        return task_id

    def status(self, task_id: str) -> str | None:
        """The task's status in Celery's words (PENDING, STARTED, SUCCESS, FAILURE, REVOKED, or NOT_FOUND), or
        None when the read failed."""
        process = self._process_of(task_id)
        self._activity = True
        return self._call(process, lambda: self.workload.status(process, task_id))

    def cancel(self, task_id: str) -> bool:
        """Cancel (revoke) a task; False when the cancel failed, or the target declares no cancel (then nothing
        is sent)."""
        process = self._process_of(task_id)
        self._mark()
        done = self._call(process, lambda: self.workload.cancel(process, task_id))
        with self._lock:
            for p in self._planned:
                if p.task_id == task_id and p.acked_at is not None and p.plan.cancel_after is None:
                    cancel_after = round(max(0.0, time.monotonic() - p.acked_at), 2)
                    p.plan = replace(p.plan, cancel_after=cancel_after)
                    break
        return done

    @property
    def task_ids(self) -> list[str]:
        """Every task id a submit of this session returned, in order."""
        return list(self.workload.acknowledged)

    @overload
    def wait_for(self, task_ids: str, timeout: float | None = None) -> str | None: ...  # type: ignore[overload-overlap]

    @overload
    def wait_for(self, task_ids: Iterable[str | None], timeout: float | None = None) -> dict[str, str | None]: ...

    def wait_for(self, task_ids: str | Iterable[str | None],
                 timeout: float | None = None) -> str | None | dict[str, str | None]:
        """Poll until the task(s) are terminal or ``timeout`` (default: the target's ``timing.quiesce_s``)
        passes, then one final drain read each. One id: its status; several: ``{id: status}`` (None ids, from
        failed submits, are skipped)."""
        single = isinstance(task_ids, str)
        ids = [task_ids] if isinstance(task_ids, str) else [t for t in task_ids if t]
        limit = self.target.timing.quiesce_s if timeout is None else timeout
        states = self._poll(ids, time.monotonic() + limit)
        return states.get(ids[0]) if single else states

    def _poll(self, ids: Sequence[str], deadline: float) -> dict[str, str | None]:
        self._activity = True if ids else self._activity
        ids = list(dict.fromkeys(ids))

        async def one(task_id: str, f: str) -> str | None:
            process = self._process_of(task_id)
            lock = self._proc_locks.setdefault(process, asyncio.Lock())
            async with lock:
                return await self.workload.status(process, task_id, f=f)

        async def go() -> dict[str, str | None]:
            seen: dict[str, str | None] = dict.fromkeys(ids)
            pending = list(ids)
            while pending:
                got = await asyncio.gather(*(one(t, "status") for t in pending))
                for t, s in zip(pending, got, strict=True):
                    if s is not None:
                        seen[t] = s
                pending = [t for t in pending if seen[t] not in TERMINAL_STATES and t not in self.workload.settled]
                if not pending or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.workload.poll_interval)
            final = await asyncio.gather(*(one(t, "drain") for t in ids))
            return {t: (s if s is not None else seen[t]) for t, s in zip(ids, final, strict=True)}

        if not ids:
            return {}
        return self._call(0, go)  # process 0 is never a task's: each read below takes its own task's lock

    def quiesce(self, timeout: float | None = None) -> dict[str, str | None]:
        """End the chaos and let the stack settle: wait for scheduled faults to run out, heal everything, wait
        for the API to answer, then poll every submitted task until terminal or ``timeout`` (default: the
        target's ``timing.quiesce_s``), and read each one last time (the drain the checkers judge)."""
        for s in list(self._scheduled):
            s.wait()
        self.heal_all()
        from chaos.runner import wait_healthy

        try:
            wait_healthy(self.cluster)
        except ChaosError as exc:
            self._error(str(exc))
        limit = self.target.timing.quiesce_s if timeout is None else timeout
        from chaos.settle import settling

        deadline = self.workload.quiesce_deadline = time.monotonic() + limit
        try:
            with settling(self.cluster, self.workload, self.recorder) as settler:  # no wait for the hopeless
                states = self._poll(self.task_ids, deadline)
        finally:
            self.workload.quiesce_deadline = math.inf
        for e in settler.errors:
            self._error(e)
        self._dirty = False
        self._quiesced = True
        return states

    # -- faults ----------------------------------------------------------------------------------------------
    def _spec(self, fault: str, node: str | None, duration: float, params: dict[str, Any]) -> FaultSpec:
        kind = fault_kind(fault)  # an unknown fault names the known ones
        if node is None:
            if kind.targets == "worker":
                live = [w.name for w in self.cluster.workers if w.alive()]
                node = live[0] if live else "worker-0"
            elif kind.targets == "link":
                links = ", ".join(LINKS if self.cluster.api is not None else LINKS[:2])
                raise BadArguments(f"{fault} is a network fault: name the link it cuts ({links})")
            else:
                node = kind.targets
        if kind.targets == "api" and self.cluster.api is None:
            raise BadArguments(f"{fault} needs an API node, and target {self.target.name!r} has none")
        return FaultSpec(fault, node, self._elapsed(), duration, dict(params))

    def inject(self, fault: str, node: str | None = None, **params: Any) -> FaultHandle:
        """Inject a fault of the catalogue (``chaos.FAULTS``) on ``node`` (a worker like "worker-0", "redis",
        "api", or a link "workers_redis" / "api_redis"); worker faults default to the first live worker. The
        window stays open until ``heal(handle)`` (or ``heal_all``, or the end of the test)."""
        spec = self._spec(fault, node, 0.0, params)
        self._mark()
        fid = self.nemesis.inject(spec)
        handle = FaultHandle(fid, spec, spec.at)
        with self._lock:
            self._open[fid] = handle
            self._faults.append(spec)
        return handle

    def heal(self, handle: FaultHandle) -> None:
        """Heal a fault ``inject`` returned (again: nothing)."""
        with self._lock:
            if handle.healed or self._open.pop(handle.fault_id, None) is None:
                handle.healed = True
                return
            handle.healed = True
            duration = round(max(0.0, time.monotonic() - self._started - handle.injected_at), 2)
            self._faults = [FaultSpec(s.kind, s.node, s.at, duration, s.params) if s is handle.spec else s
                            for s in self._faults]
        self._mark()
        self.nemesis.heal(handle.fault_id)

    @contextlib.contextmanager
    def fault(self, fault: str, node: str | None = None, **params: Any) -> Iterator[FaultHandle]:
        """``with chaos.fault("restart-redis"): ...``: injected on entering the block, healed on leaving it."""
        handle = self.inject(fault, node, **params)
        try:
            yield handle
        finally:
            self.heal(handle)

    def at(self, seconds: float, fault: str, node: str | None = None, duration: float = 1.0,
           **params: Any) -> ScheduledFault:
        """Inject ``fault`` ``seconds`` from now in a background thread, hold it ``duration`` seconds, heal it.

        Faults on one node take turns. Whatever happens it is healed by the end of the test (``quiesce`` waits
        for it to run out; ``heal_all`` and the end of the test cancel or heal it at once)."""
        spec = self._spec(fault, node, duration, params)  # errors here, not in the thread
        job = ScheduledFault(spec)

        def go() -> None:
            if job._stop.wait(max(0.0, seconds)):
                job.state = "cancelled"
                return
            with self._lock:
                node_lock = self._node_locks.setdefault(spec.node, threading.Lock())
            with node_lock:
                if job._stop.is_set():
                    job.state = "cancelled"
                    return
                try:
                    job.handle = self.inject(fault, spec.node, **params)
                except Exception as exc:  # noqa: BLE001 - the verdict says it
                    job.state, job.error = "failed", f"{spec.kind} on {spec.node}: inject failed: {exc}"
                    self._error(job.error)
                    return
                job.state = "active"
                job._stop.wait(max(0.0, duration))
                try:
                    self.heal(job.handle)
                    job.state = "healed"
                except Exception as exc:  # noqa: BLE001
                    job.state, job.error = "failed", f"{spec.kind} on {spec.node}: heal failed: {exc}"
                    self._error(job.error)

        job._thread = threading.Thread(target=go, name=f"chaos-at-{fault}", daemon=True)
        with self._lock:
            self._scheduled.append(job)
        self._mark()
        job._thread.start()
        return job

    def heal_all(self) -> list[str]:
        """Cancel scheduled faults not started yet, heal every open fault, resume paused nodes, clear the
        proxy's toxics. Never raises: returns (and records for the verdict) what went wrong."""
        errors: list[str] = []
        with self._lock:
            scheduled = list(self._scheduled)
        for s in scheduled:
            s.cancel()
        for s in scheduled:
            if not s.wait(120):
                errors.append(f"the scheduled {s.spec} did not stop within 120 s")
        with self._lock:
            handles = list(self._open.values())
        for h in handles:
            try:
                self.heal(h)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"heal of {h.spec.kind} on {h.spec.node} failed: {exc}")
        errors += self.nemesis.heal_all()
        for e in errors:
            self._error(e)
        return errors

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    # -- the verdict -------------------------------------------------------------------------------------------
    def _replay_file(self, name: str) -> Path | None:
        return self.report_dir / "replay" / f"{name}.json" if self.report_dir is not None else None

    def _replay_for(self, name: str, example: str | None = None) -> str:
        path = self._replay_file(name)
        if path is not None:
            return replay_command(path, self.target, self.cluster.backend.name, self.selector)
        rerun = self.rerun or "re-run the test"
        what = f"the example {example}; " if example else ""
        return (f"{what}{rerun} (with --chaos-report DIR the plugin also writes a scenario file that "
                f"`chaos run --scenario-file` replays)")

    def scenario(self) -> Any:
        """What this session did, as a ``runner.Scenario`` (submit times, cancels, fault windows): the replay."""
        from chaos.runner import Scenario

        with self._lock:
            plans = [p.plan for p in self._planned]
            faults = list(self._faults)
            open_ids = {id(h.spec) for h in self._open.values()}
        now = self._elapsed()
        schedule = [FaultSpec(f.kind, f.node, f.at, round(max(0.1, now - f.at), 2) if id(f) in open_ids else
                              max(0.1, f.duration), f.params) for f in faults]
        return Scenario(self.name, plans, schedule, quiesce=self.target.timing.quiesce_s, seed=self.seed,
                        check=self.check, description=f"replay of {self.description}",
                        concurrency=self.concurrency, request_timeout=self.request_timeout)

    def _write_replay(self) -> None:
        path = self._replay_file(self.name)
        if path is None or not self._activity:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.scenario().to_dict(), indent=2) + "\n")

    def verdict(self) -> ChaosVerdict:
        """Finish and judge: quiesce (when anything happened since the last one), read the target's ledger
        when it declares one, note what went wrong, and run every checker on the history."""
        if self._dirty or not self._quiesced:
            self.quiesce()
        self._stop_watch()
        from chaos.runner import gather_evidence

        started = self.recorder.history().started_wall
        for e in gather_evidence(self.cluster, self.workload, self.recorder, started - 1.0 if started else None):
            self._error(e)
        self.cluster.submitted |= set(self.workload.acknowledged)
        with self._lock:
            new, self._noted = self.errors[self._noted:], len(self.errors)
        for e in new:
            self.recorder.note(e)
        history = self.recorder.history()
        result = check_all(history, for_target(self.check, self.target))
        self._write_replay()
        v = ChaosVerdict(self.name, result, self._replay_for(self.name), list(self.errors), history,
                         self.history_path, time.monotonic() - self._started, self.description)
        self.last_verdict = v
        return v

    # -- generated examples --------------------------------------------------------------------------------------
    def run(self, plans: Sequence[TaskPlan], schedule: Sequence[FaultSpec] = (), *, quiesce: float | None = None,
            check: CheckConfig | None = None, concurrency: int | None = None) -> ChaosVerdict:
        """Run one example (a task mix and a fault schedule, e.g. drawn by ``task_plans`` and ``schedules``) as
        a scenario of its own on a reset stack, and return its verdict (its own history, its own replay file).

        Under ``@given``, a failing example is answered from memory when Hypothesis asks for it again (real
        runs do not always reproduce), and after a failure at most ``shrink_runs`` new examples are run for real
        while Hypothesis shrinks; the others are rejected (not run, not passed)."""
        from chaos.runner import Scenario, run_scenario

        plans, schedule = list(plans), list(schedule)
        key = json.dumps([[p.to_dict() for p in plans], [f.to_dict() for f in schedule]], sort_keys=True)
        if key in self._failed_examples:
            return self._failed_examples[key]
        if self._failed_examples and in_hypothesis():
            if self._runs_after_failure >= self.shrink_runs:
                from hypothesis import reject

                reject()  # the shrink budget is spent: this example is not run (so neither failed nor passed)
            self._runs_after_failure += 1
        name = f"{self.name}-{len(self.runs) + 1}"
        example = describe_example(plans, schedule)
        scen = Scenario(name, plans, schedule, quiesce=self.target.timing.quiesce_s if quiesce is None else quiesce,
                        seed=self.seed, check=check or self.check,
                        concurrency=concurrency or self.concurrency, request_timeout=self.request_timeout,
                        description=f"{self.description}: {example}", replay=self._replay_for(name, example))
        if self._touched:
            self.heal_all()
            self.cluster.reset()  # every example starts from a healed, empty stack
        self._touched = True
        r = run_scenario(self.cluster, scen, self.report_dir)
        path = self._replay_file(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(scen.to_dict(), indent=2) + "\n")
        v = ChaosVerdict(name, r.result, scen.replay or "", list(r.errors), r.history, r.history_path, r.duration,
                         scen.description)
        self.runs.append((r, v))
        if r.result.valid is False:
            self._failed_examples[key] = v
        return v

    # -- the end -------------------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """The session's own history has client operations or faults (``run`` examples have their own)."""
        return self._activity

    def close(self) -> list[str]:
        """Heal whatever is still open, stop the client, close the history. Returns the heal's errors."""
        if self._closed:
            return []
        errors = self.heal_all()
        self._closed = True
        self._stop_watch()
        if self._loop is not None:
            self._loop.close()
        self._write_replay()
        self.recorder.close()
        if self.history_path is not None and not self._activity and self.runs and self.history_path.exists():
            self.history_path.unlink()  # only run() examples: their histories are the evidence
        return errors

    def __enter__(self) -> ChaosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def report_entries(self) -> list[ScenarioEntry]:
        """``report.json`` scenario entries: this session's history (when it has one) and every ``run``."""
        from chaos.report import scenario_entry, undecided_entry

        out = []
        if self._activity:
            v = self.last_verdict
            if v is None or v.history is None:
                out.append(undecided_entry(self.name, "the test ended without a verdict (chaos.verdict())",
                                           self.description))
            else:
                out.append(scenario_entry(self.name, self.description, v.history, v.result, v.duration, v.errors,
                                          self.report_dir, self.history_path, v.replay, self.check))
        for r, v in self.runs:
            out.append(scenario_entry(v.name, v.description, r.history, r.result, r.duration, r.errors,
                                      self.report_dir, r.history_path, v.replay, r.scenario.check))
        return out
