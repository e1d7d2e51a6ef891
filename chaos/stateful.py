"""A Hypothesis ``RuleBasedStateMachine`` that interleaves client operations and faults, step by step.

Where ``chaos.properties`` draws a whole workload and a whole schedule up front, this machine lets Hypothesis
choose the next move after each one: submit, cancel, poll, inject a fault, heal one, or let time pass. Its
teardown heals everything, drains, reads the target's ledger and runs every checker; a violation fails the
example and Hypothesis shrinks the sequence of steps, printing it as a program that replays it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, multiple, precondition, rule

from chaos.checkers import CheckConfig
from chaos.checkers.compose import check_all
from chaos.checkers.config import for_target
from chaos.history import Meta, Recorder
from chaos.nemesis import FaultSpec, Nemesis
from chaos.probes import fetch_ledger
from chaos.runner import wait_healthy
from chaos.strategies import DEFAULT_FAULTS, fault_specs, tenths
from chaos.workload import TaskPlan, for_cluster

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster


def machine_for(cluster: Cluster, *, faults: tuple[str, ...] = DEFAULT_FAULTS, max_open_faults: int = 2,
                quiesce: float | None = None, check: CheckConfig | None = None,
                report_dir: Path | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class bound to a running cluster (run it with ``run_state_machine_as_test``)."""
    target = cluster.target
    # as the property runs: 5/6 of the target's deadline unless told
    settle: float = quiesce if quiesce is not None else round(target.timing.quiesce_s * 5 / 6, 1)
    kinds = [k.name for k in target.kinds]
    lo, hi = target.http.priority_range if target.http else (0, 9)
    counter = {"n": 0}

    class ChaosMachine(RuleBasedStateMachine):
        tasks = Bundle("tasks")

        def __init__(self) -> None:
            super().__init__()
            counter["n"] += 1
            self.name = f"stateful-{counter['n']}"
            path = report_dir / "histories" / f"{self.name}.jsonl" if report_dir else None
            if path is not None and path.exists():
                path.unlink()
            self.recorder = Recorder(path, Meta(scenario=self.name, target=target.name,
                                                config={"faults": list(faults), "quiesce": settle}))
            self.workload = for_cluster(cluster, self.recorder)
            self.nemesis = Nemesis(cluster, self.recorder)
            self.open: list[str] = []
            self.process = 0

        def _next(self) -> int:
            self.process += 1
            return self.process

        @initialize(target=tasks, first=st.lists(st.sampled_from(kinds), min_size=1, max_size=3))
        def start_with_work(self, first: list[str]) -> Any:
            """A clean stack and a few tasks in flight, so that the first fault has something to hit."""
            cluster.reset()
            ids = [self.workload.one(self.workload.submit, self._next(), TaskPlan(k)) for k in first]
            return multiple(*[i for i in ids if i is not None])

        @rule(target=tasks, kind=st.sampled_from(kinds), priority=st.integers(lo, hi))
        def submit(self, kind: str, priority: int) -> Any:
            task_id = self.workload.one(self.workload.submit, self._next(), TaskPlan(kind, priority))
            return task_id if task_id is not None else multiple()

        @rule(task=tasks)
        def cancel(self, task: str) -> None:
            self.workload.one(self.workload.cancel, self.workload.acknowledged.get(task, self._next()), task)

        @rule(task=tasks)
        def poll(self, task: str) -> None:
            self.workload.one(self.workload.status, self.workload.acknowledged.get(task, self._next()), task)

        @precondition(lambda self: len(self.open) < max_open_faults)
        @rule(fault=fault_specs(kinds=faults, workers=max(1, len(cluster.workers)), api=cluster.api is not None))
        def inject(self, fault: FaultSpec) -> None:
            if self.nemesis.busy(fault.node):  # faults on one node take turns, as in scheduled runs
                self.recorder.note(f"skipped {fault}: {fault.node} already has an open fault")
                return
            try:
                self.open.append(self.nemesis.inject(fault))
            except Exception as exc:  # noqa: BLE001 - e.g. no live worker left to hurt: recorded, not fatal
                self.recorder.note(f"could not inject {fault}: {exc}")

        @precondition(lambda self: bool(self.open))
        @rule()
        def heal(self) -> None:
            self.nemesis.heal(self.open.pop(0))

        @rule(seconds=tenths(0.1, 1.5))
        def wait(self, seconds: float) -> None:
            time.sleep(seconds)

        def teardown(self) -> None:
            errors = self.nemesis.heal_all()
            self.open.clear()
            try:
                wait_healthy(cluster)
                self.workload.drain_sync(time.monotonic() + settle)
                ledger = fetch_ledger(cluster, since=(self.recorder.history().started_wall or 0) - 1.0)
                if ledger is not None:
                    self.recorder.probe("ledger", ledger)
            finally:
                self.recorder.close()
            verdict = check_all(self.recorder.history(), for_target(check or CheckConfig(), target))
            problems = [f"{f.checker}/{f.kind}: {f.message}" for f in verdict.findings
                        if verdict.results[f.checker].valid is False]
            assert verdict.valid is not False, "\n".join(problems[:10])
            assert not errors, f"the final heal failed: {errors}"

    return ChaosMachine
