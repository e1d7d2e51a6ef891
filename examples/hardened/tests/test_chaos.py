"""Chaos tests for this app, written with celery-chaos's pytest fixture ``chaos``.

Run them from this directory: ``python3 -m pytest tests`` (``--chaos-report chaos-report`` adds every test's
history, a replay file per test, and report.html / report.json / junit.xml). The target is the
``[tool.celery-chaos.target]`` table of this directory's ``pyproject.toml``; the stack comes up once for the
session and is healed and emptied before each test.
"""

import time
from pathlib import Path

from hypothesis import given

from chaos import load_target, realtime, schedules, task_plans

TARGET = load_target(Path(__file__).resolve().parents[1] / "pyproject.toml")


def test_a_worker_killed_mid_task_loses_nothing(chaos):
    """(a) A fixed scenario: more tasks than pool slots, SIGKILL a worker mid-task, start it again: every task
    must still finish (running and prefetched ones included)."""
    ids = [chaos.submit("long" if i % 4 else "short") for i in range(8)]
    assert all(ids)
    time.sleep(0.5)  # both workers are running tasks now, and hold more
    kill = chaos.inject("kill-worker", "worker-0")  # SIGKILL the worker and its pool children
    time.sleep(1.0)
    chaos.heal(kill)  # the worker starts again
    chaos.quiesce()  # every task terminal, or the target's timing.quiesce_s has passed
    chaos.verdict().assert_ok()


def test_a_redis_restart_mid_task_loses_nothing(chaos):
    """(b) A fault around a block: Redis restarts while long tasks run and more are submitted."""
    for _ in range(6):
        chaos.submit("long")
    time.sleep(0.5)  # the first ones are running now
    with chaos.fault("restart-redis"):  # injected on entering the block, healed on leaving it
        for _ in range(4):
            chaos.submit("short")
        time.sleep(0.5)
    chaos.verdict().assert_ok()  # verdict() quiesces first


@realtime  # 3 examples, no deadline, no example database: each example is a real run
@given(plans=task_plans(TARGET, min_tasks=3, max_tasks=8, horizon=2.0, cancels=False),  # no cancel declared
       schedule=schedules(max_faults=2, kinds=("kill-worker", "kill-child", "restart-worker"), horizon=2.0))
def test_any_task_mix_survives_worker_faults(chaos, plans, schedule):
    """(c) A property: Hypothesis draws a task mix and a schedule of worker faults; each example is a scenario
    of its own on a reset stack, and a failing one is shrunk (its replay file is written per example)."""
    chaos.run(plans, schedule).assert_ok()
