"""The scenario runner: workload under faults, final heal, quiesce, drain, probe, check. Jepsen's shape.

The pytest plugin, the Hypothesis properties and the ``chaos`` CLI all call ``run_scenario``; none of them holds
logic the others lack.
"""

from __future__ import annotations

import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from chaos.checkers import CheckConfig
from chaos.checkers.compose import Verdict, check_all
from chaos.checkers.config import for_target
from chaos.checkers.worker_crash import FATAL, fatal_lines
from chaos.errors import ChaosError, ClusterError
from chaos.health_watch import HealthWatch
from chaos.history import BROKER_PROBE, EXECUTIONS_PROBE, WORKER_LOG_PROBE, History, Meta, Recorder
from chaos.nemesis import FaultSpec, Nemesis
from chaos.probe import read_cluster
from chaos.probes import fetch_ledger
from chaos.settle import Settler, settling
from chaos.waiting import wait_until
from chaos.workload import TaskPlan, for_cluster

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster


@dataclass
class Scenario:
    """A workload and a fault schedule, plus how long to wait for the stack to settle afterwards."""

    name: str
    plans: list[TaskPlan]
    schedule: list[FaultSpec] = field(default_factory=list)
    quiesce: float = 30.0
    concurrency: int = 10
    description: str = ""
    check: CheckConfig = field(default_factory=CheckConfig)
    seed: int | None = None
    replay: str | None = None
    unknown_probes: int = 0  # status reads of never-submitted ids (judged by the target's unknown_ids promise)
    request_timeout: float = 5.0  # the client's patience per request (HTTP or Celery); slower counts as unknown
    requires: tuple[str, ...] = ()  # target capabilities it needs (Target.supports); without them it is n/a

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "quiesce": self.quiesce,
                "concurrency": self.concurrency, "seed": self.seed, "unknown_probes": self.unknown_probes,
                "request_timeout": self.request_timeout, "requires": list(self.requires),
                "plans": [p.to_dict() for p in self.plans], "schedule": [f.to_dict() for f in self.schedule],
                "check": self.check.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        check = CheckConfig.from_dict(d["check"]) if d.get("check") else CheckConfig()
        return cls(name=d["name"], plans=[TaskPlan.from_dict(p) for p in d["plans"]],
                   schedule=[FaultSpec.from_dict(f) for f in d.get("schedule", [])],
                   quiesce=float(d.get("quiesce", 30.0)), concurrency=int(d.get("concurrency", 10)),
                   description=d.get("description", ""), check=check, seed=d.get("seed"),
                   unknown_probes=int(d.get("unknown_probes", 0)),
                   request_timeout=float(d.get("request_timeout", 5.0)),
                   requires=tuple(d.get("requires", ())))

    @property
    def families(self) -> list[str]:
        from chaos.nemesis import fault_kind

        return sorted({fault_kind(f.kind).family for f in self.schedule})


@dataclass
class ScenarioResult:
    scenario: Scenario
    history: History
    result: Verdict
    duration: float
    history_path: Path | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool | str:
        return self.result.valid


def versions(cluster: Cluster) -> dict[str, str]:
    """Versions that matter to a resilience verdict (recorded in every history and report).

    Celery, kombu and redis-py are the *target's* (read from its own interpreter on the local backend, which
    may pin another Celery than the framework's); ``celery-chaos`` and ``framework-python`` are ours.
    """
    import importlib.metadata as md

    out = {"framework-python": platform.python_version(), "backend": cluster.backend.name}
    try:
        out["celery-chaos"] = md.version("celery-chaos")
    except md.PackageNotFoundError:
        pass
    out.update(target_versions(cluster))
    try:
        assert cluster.redis is not None
        r = cluster.redis.client()
        try:
            out["redis-server"] = str(r.info("server").get("redis_version"))
        finally:
            r.close()
    except Exception:  # noqa: BLE001 - the broker may be the thing that is down
        pass
    return out


def target_versions(cluster: Cluster) -> dict[str, str]:
    """python / celery / kombu / redis as the target's processes see them (the docker image's on docker)."""
    import importlib.metadata as md
    import json
    import subprocess

    target = cluster.target
    if cluster.backend.name == "local":
        code = ("import json, platform, importlib.metadata as m\nv = {'python': platform.python_version()}\n"
                "for p in ('celery', 'kombu', 'redis'):\n    try: v[p] = m.version(p)\n"
                "    except m.PackageNotFoundError: pass\nprint(json.dumps(v))")
        try:
            r = subprocess.run([target.interpreter, "-c", code], cwd=target.workdir, capture_output=True,
                               text=True, timeout=30)
            found = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
            return {str(k): str(v) for k, v in found.items()}
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return {}
    out = {"python": platform.python_version()}  # docker: the image is built with the framework's pins
    for pkg in ("celery", "kombu", "redis"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def locate_unfinished(cluster: Cluster, workload: Any, second_look_s: float = 1.0,
                      settler: Settler | None = None) -> dict[str, Any]:
    """Where each acknowledged task that is not terminal is, looked at twice ``second_look_s`` apart (a message
    in flight between two places is seen once, a gone one twice): ``{task id: {"first": ..., "second": ...}}``.
    The settler's last two looks serve when the later is fresh (under ``second_look_s`` old)."""
    from chaos.inspector import locate

    pending = workload.unfinished()
    if not pending or cluster.redis is None or not cluster.redis.alive():
        return {}
    recent = settler.last_two_looks(pending, within_s=second_look_s) if settler is not None else None
    if recent is not None:
        first, second = recent
    else:
        first = locate(cluster, pending)
        time.sleep(second_look_s)
        second = locate(cluster, pending)
    return {t: {"first": first[t].to_dict(), "second": second[t].to_dict()} for t in pending}


def gather_evidence(cluster: Cluster, workload: Any, recorder: Recorder, since: float | None,
                    settler: Settler | None = None) -> list[str]:
    """After the quiesce, into the history: where each unfinished task is, the target's ledger, the worker
    probe's executions (without earlier runs' leftovers), and the workers that died on their own. Returns the
    errors that cost evidence (the caller notes them)."""
    errors: list[str] = []
    try:
        where = locate_unfinished(cluster, workload, settler=settler)
        if where:
            recorder.probe(BROKER_PROBE, where)
    except Exception as exc:  # noqa: BLE001 - a look into Redis must not cost the verdict
        recorder.note(f"broker inspector failed: {type(exc).__name__}: {exc}")
    try:
        ledger = fetch_ledger(cluster, since=since)
        if ledger is not None:
            recorder.probe("ledger", ledger)
    except ChaosError as exc:
        errors.append(f"probe failed: {exc}")
    try:
        records = read_cluster(cluster, since=since)
        if records is not None:  # the worker probe: executions seen by Celery's own signals
            earlier = cluster.submitted - set(workload.acknowledged)
            recorder.probe(EXECUTIONS_PROBE, without_leftovers(records, earlier))
    except OSError as exc:
        recorder.note(f"worker probe records unreadable: {exc}")
    try:
        recorder.probe(WORKER_LOG_PROBE, worker_log_evidence(cluster))
    except Exception as exc:  # noqa: BLE001 - an unreadable log must not cost the verdict
        recorder.note(f"worker logs unreadable: {type(exc).__name__}: {exc}")
    for w in cluster.workers:
        if not w.alive():
            recorder.note(f"{w.name} was not running at the end: it exited on its own, not by a fault")
    return errors


def worker_log_evidence(cluster: Cluster) -> dict[str, Any]:
    """For each worker, from what its log gained during the run: the lines where Celery gave up (the last few
    and how many), whether it is running, and whether it started again after the last one (the final heal
    starts dead workers, and Celery logs "<name> ready." on every start)."""
    alive = {w.name: w.alive() for w in cluster.workers}
    out: dict[str, Any] = {}
    for name, text in cluster.worker_logs_since_mark().items():
        fatal = fatal_lines(text)
        entry: dict[str, Any] = {"alive": alive[name], "fatal": fatal[-5:], "times": len(fatal)}
        if fatal:
            entry["restarted"] = " ready." in text[text.rindex(FATAL):]
        out[name] = entry
    return out


def without_leftovers(records: dict[str, Any], earlier: set[str]) -> dict[str, Any]:
    """The probe's records without the tasks earlier runs on the cluster submitted (a message restored from the
    unacked set after the visibility timeout runs in a later scenario: not this scenario's work)."""
    tasks = records.get("tasks") or []
    kept = [t for t in tasks if str(t.get("task_id")) not in earlier]
    if len(kept) == len(tasks):
        return records
    return {**records, "tasks": kept, "probe": {**(records.get("probe") or {}), "leftovers": len(tasks) - len(kept)}}


def wait_healthy(cluster: Cluster, timeout: float = 60.0) -> None:
    """After the final heal: the API answers its probe path, or accepts connections when it declares none
    (dead workers are evidence, not a reason to wait)."""
    from chaos.cluster.base import api_answers

    http = cluster.target.http
    if cluster.target.api_command is None or http is None:
        return
    last = [f"{http.probe_path} did not answer 200"]

    def healthy() -> bool:
        try:
            return api_answers(cluster.api_url, http.probe_path, timeout=2.0)
        except (httpx.HTTPError, OSError) as exc:
            last[0] = type(exc).__name__
            return False

    if not wait_until(healthy, timeout, 0.2, error=None):
        raise ClusterError(f"the stack did not become healthy within {timeout:.0f}s after the final heal ({last[0]})")


def run_scenario(cluster: Cluster, scenario: Scenario, report_dir: Path | None = None) -> ScenarioResult:
    """Run one scenario on a started cluster; the cluster is healed afterwards whatever happened."""
    started = time.monotonic()
    scenario.check = for_target(scenario.check, cluster.target)
    hist_path = report_dir / "histories" / f"{scenario.name}.jsonl" if report_dir else None
    if hist_path is not None and hist_path.exists():
        hist_path.unlink()
    meta = Meta(scenario=scenario.name, seed=scenario.seed, target=cluster.target.name,
                config=scenario.to_dict(), versions=versions(cluster), replay=scenario.replay)
    recorder = Recorder(hist_path, meta)
    cluster.mark_worker_logs()  # the worker-logs evidence reads what the logs gain from here on
    workload = for_cluster(cluster, recorder, concurrency=scenario.concurrency,
                           request_timeout=scenario.request_timeout)
    nemesis = Nemesis(cluster, recorder)
    errors: list[str] = []
    wl_error: list[BaseException] = []

    def drive() -> None:
        try:
            workload.run_sync(scenario.plans, scenario.unknown_probes)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            wl_error.append(exc)
        finally:
            workload.started.set()

    thread = threading.Thread(target=drive, name=f"workload-{scenario.name}", daemon=True)
    watch = HealthWatch(cluster.target, lambda: cluster.api_url, recorder)
    watch.start()  # only for targets that declare what their health endpoint says during an outage
    thread.start()
    workload.started.wait(scenario.request_timeout + 5.0)  # its connections open: the clock starts
    stop = threading.Event()
    try:
        errors += nemesis.run_schedule(scenario.schedule, workload.t0, stop)
    finally:
        stop.set()
        errors += nemesis.heal_all()
    try:
        last_submit = workload.t0 + max((p.at for p in scenario.plans), default=0.0)
        # A burst at the end of the schedule (or with none) is measured with this process quiet: its health reads
        # and the settler's looks into Redis, on the workload's CPU, added 70-100 ms to a burst of 100 submits.
        workload.submitted.wait(max(0.0, last_submit - time.monotonic()) + scenario.request_timeout + 1.0)
        wait_healthy(cluster)
        workload.quiesce_deadline = max(time.monotonic(), last_submit) + scenario.quiesce
        with settling(cluster, workload, recorder) as settler:  # tasks that cannot finish in time: not waited for
            thread.join(scenario.quiesce + max((p.at for p in scenario.plans), default=0.0) + 120)
        watch.stop()
        errors += settler.errors
        if thread.is_alive():
            raise ClusterError("the workload did not finish after its quiesce deadline")
        if wl_error:
            raise wl_error[0]
        errors += gather_evidence(cluster, workload, recorder, since=meta.started_wall - 1.0, settler=settler)
        for e in errors:
            recorder.note(e)
    finally:
        watch.stop()
        recorder.close()
        cluster.submitted |= set(workload.acknowledged)
        if report_dir is not None:
            cluster.keep_logs(report_dir / "logs" / scenario.name)
    history = recorder.history()
    result = check_all(history, scenario.check)
    return ScenarioResult(scenario, history, result, time.monotonic() - started, hist_path, errors)
