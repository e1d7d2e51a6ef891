"""Decide early: a task that cannot finish before the quiesce deadline stops being waited for.

Waiting out the whole deadline for a task that is already gone is what made a lost task cost 30 s to detect. After
the final heal the runner looks into Redis and the worker probe's records every ``every_s`` (``chaos.inspector``)
and *settles* an unfinished task when two looks in a row show a place it cannot leave by the deadline without
help:

- ``gone``: in no queue, not in the unacked set, held by no live worker;
- ``unacked`` since T, when T plus the workers' visibility timeout is past the deadline (kombu gives it back only
  then);
- ``queued`` while no worker is alive to take it.

The help an app may give is its own recovery (a sweeper, a re-publisher): a target that declares
``timing.recovery_s`` is left that long after the heal before a gone or unacked task of it is settled (a queued
task with no worker alive is past any re-publishing); Celery itself has none.
A task the result backend already holds as finished is settled too when the client's reads of it fail (polling a
read that answers 500 teaches nothing more). Without the worker probe nothing is settled as gone or parked: a
prefetched task would look gone.

A settled task is no longer polled; it still gets its final drain read, the runner's last two looks, and the
checkers' verdict, so settling changes when a scenario ends, never what it finds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster
    from chaos.history import Recorder
    from chaos.inspector import Location
    from chaos.workload import BaseWorkload

@dataclass(frozen=True)
class Settled:
    """Why one task stopped being waited for, and when (on the history's clock)."""

    where: str
    detail: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "detail": self.detail, "at": round(self.at, 3)}


def hopeless(loc: Location, *, deadline_epoch: float, visibility_s: float | None, workers_alive: bool,
             read_failing: bool) -> bool:
    """Can a task in ``loc`` not reach a terminal state by ``deadline_epoch`` without the app's own recovery?"""
    if loc.where == "finished":
        return read_failing
    if visibility_s is None:  # no probe: a prefetched or running task is indistinguishable from a gone one
        return False
    if loc.where == "gone":
        return True
    if loc.where == "unacked":
        return loc.since is not None and loc.since + visibility_s > deadline_epoch
    if loc.where == "queued":
        return not workers_alive
    return False  # running or held by a live worker: it may still finish


class Settler:
    """Looks every ``every_s`` until ``stop`` is set, and adds settled task ids to ``workload.settled``."""

    def __init__(self, cluster: Cluster, workload: BaseWorkload, *, healed_at: float, every_s: float = 1.0) -> None:
        self.cluster = cluster
        self.workload = workload
        self.every_s = every_s
        recovery = cluster.target.timing.recovery_s
        self.not_before = healed_at + (recovery or 0.0)  # monotonic: the app's own recovery gets its time first
        self.settled: dict[str, Settled] = {}
        self.errors: list[str] = []
        self._previous: dict[str, str] = {}  # task id -> the hopeless place of the last look
        self.looks: deque[tuple[float, dict[str, Location]]] = deque(maxlen=2)  # (monotonic, where) of the last two

    def last_two_looks(self, task_ids: list[str], within_s: float) -> tuple[dict[str, Location], ...] | None:
        """The last two looks when they cover ``task_ids`` and the later is under ``within_s`` old: the final
        pair of observations then needs no new second look (a settled task was seen in the same place in both)."""
        if len(self.looks) < 2 or time.monotonic() - self.looks[-1][0] > within_s:
            return None
        pair = tuple(where for _, where in self.looks)
        return pair if all(t in w for w in pair for t in task_ids) else None

    def look(self) -> None:
        """One look: settle the tasks that were in the same hopeless place in this look and the one before."""
        from chaos.inspector import locate, visibility_timeout
        from chaos.probe import read_cluster

        unfinished = self.workload.unfinished()
        pending = [t for t in unfinished if t not in self.workload.settled]
        redis = self.cluster.redis
        if not pending or redis is None or not redis.alive():
            return
        records = read_cluster(self.cluster, include_records=True)
        now_mono = time.monotonic()
        deadline_epoch = time.time() + (self.workload.quiesce_deadline - now_mono)
        visibility = visibility_timeout((records or {}).get("workers"))
        alive = any(w.alive() for w in self.cluster.workers)
        where = locate(self.cluster, unfinished, records=records)  # the settled too: the final looks reuse these
        self.looks.append((now_mono, where))
        last = dict(self.workload.last_status)
        seen: dict[str, str] = {}
        for tid in pending:
            loc = where.get(tid)
            if loc is None or not hopeless(loc, deadline_epoch=deadline_epoch, visibility_s=visibility,
                                           workers_alive=alive, read_failing=last.get(tid) is None):
                continue
            seen[tid] = loc.where
            # the app's recovery re-publishes what Celery lost; a finished task or one queued with no worker
            # alive to run it is no case for it
            if self._previous.get(tid) == loc.where and (now_mono >= self.not_before
                                                         or loc.where in ("finished", "queued")):
                self.settled[tid] = Settled(loc.where, loc.detail, self.workload.recorder.elapsed())
                self.workload.settled.add(tid)
        self._previous = seen

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            try:
                self.look()
            except Exception as exc:  # noqa: BLE001 - a failed look costs time, never the verdict
                self.errors.append(f"early decision look failed: {type(exc).__name__}: {exc}")
                if len(self.errors) > 3:
                    return

    def start(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="settler", daemon=True)
        thread.start()
        return thread, stop


@contextlib.contextmanager
def settling(cluster: Cluster, workload: BaseWorkload, recorder: Recorder) -> Iterator[Settler]:
    """Settle tasks while the body waits for the workload (call it right after the heal, with the workload's
    ``quiesce_deadline`` set); what was settled lands in the history, failed looks in ``settler.errors``."""
    from chaos.history import SETTLED_PROBE

    settler = Settler(cluster, workload, healed_at=time.monotonic())
    thread, stop = settler.start()
    try:
        yield settler
    finally:
        stop.set()
        thread.join(10)
        if settler.settled:
            recorder.probe(SETTLED_PROBE, {t: s.to_dict() for t, s in settler.settled.items()})
