"""``chaos.probe.read_executions`` on hand-written record files: pairing, torn lines, retries, revokes, kills."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaos.history import Ledger
from chaos.probe import read_executions, read_records, worker_events

NODE = "worker-0"
HOST = "worker-0@box"


def rec(event: str, t: float, pid: int, seq: int, task_id: str | None = None, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"v": 1, "event": event, "t": t, "seq": seq, "pid": pid, "ppid": 100, "node": NODE,
                         "hostname": HOST}
    if task_id:
        r.update(task_id=task_id, task="app.work")
    r.update(kw)
    return r


def write(d: Path, name: str, records: list[dict[str, Any]], tail: str = "") -> None:
    d.mkdir(parents=True, exist_ok=True)
    with (d / name).open("a") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.write(tail)


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in result["tasks"]}


def test_success_failure_and_a_torn_last_line(tmp_path: Path) -> None:
    main = [rec("worker_init", 1.0, 100, 1), rec("worker_ready", 2.0, 100, 2),
            rec("task_received", 10.0, 100, 3, "ok", state="RECEIVED"),
            rec("task_received", 10.1, 100, 4, "bad", state="RECEIVED")]
    child = [rec("worker_process_init", 1.5, 101, 1),
             rec("task_prerun", 10.2, 101, 2, "ok", state="STARTED", retries=0),
             rec("task_success", 10.5, 101, 3, "ok", state="SUCCESS"),
             rec("task_postrun", 10.6, 101, 4, "ok", state="SUCCESS"),
             rec("task_prerun", 11.0, 101, 5, "bad", state="STARTED"),
             rec("task_failure", 11.1, 101, 6, "bad", state="FAILURE", exc="ValueError"),
             rec("task_postrun", 11.2, 101, 7, "bad", state="FAILURE")]
    write(tmp_path, "worker-0-100.jsonl", main)
    write(tmp_path, "worker-0-101.jsonl", child, tail='{"v":1,"event":"task_prerun","t":12.0,"pi')

    result = read_executions(tmp_path)
    tasks = by_id(result)
    assert [t["task_id"] for t in result["tasks"]] == ["ok", "bad"]  # in order of first record
    ok, bad = tasks["ok"], tasks["bad"]
    assert ok["state"] == "SUCCESS" and ok["created_at"] == 10.0 and ok["name"] == "app.work"
    assert ok["expected_effects"] == 0 and ok["effects"] == 0
    assert [(e["attempt"], e["worker"], e["pid"], e["started_at"], e["finished_at"], e["outcome"])
            for e in ok["executions"]] == [(1, HOST, 101, 10.2, 10.6, "success")]
    assert bad["state"] == "FAILURE"
    assert bad["executions"][0]["outcome"] == "failure" and bad["executions"][0]["exception"] == "ValueError"
    assert result["probe"]["loaded"] and result["probe"]["files"] == 2
    assert result["probe"]["warnings"] == ["worker-0-101.jsonl:8: skipped, torn last line"]

    ledger = Ledger.from_dict(result)  # the checkers' schema reads it (extra keys ignored)
    assert ledger.by_id()["ok"].executions[0].outcome == "success"
    assert ledger.by_id()["bad"].state == "FAILURE"


def test_killed_child_leaves_an_unfinished_execution_and_the_redelivery_is_attempt_2(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-101.jsonl", [rec("task_prerun", 5.0, 101, 1, "t1", retries=0)])  # SIGKILLed here
    # the main process reports the lost worker; then the message comes back and another child runs it
    write(tmp_path, "worker-0-100.jsonl", [
        rec("task_received", 4.9, 100, 1, "t1", state="RECEIVED"),
        rec("task_failure", 6.0, 100, 2, "t1", state="FAILURE", exc="WorkerLostError"),
        rec("task_received", 20.0, 100, 3, "t1", state="RECEIVED", redelivered=True)])
    write(tmp_path, "worker-0-102.jsonl", [rec("task_prerun", 20.1, 102, 1, "t1", redelivered=True),
                                           rec("task_postrun", 21.0, 102, 2, "t1", state="SUCCESS")])
    t1 = by_id(read_executions(tmp_path))["t1"]
    assert t1["state"] == "SUCCESS"
    first, second = t1["executions"]
    assert (first["attempt"], first["pid"], first["finished_at"], first["outcome"]) == (1, 101, None, None)
    assert (second["attempt"], second["pid"], second["outcome"], second["redelivered"]) == (2, 102, "success", True)


def test_died_after_the_success_signal_keeps_its_outcome(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-101.jsonl", [rec("task_prerun", 1.0, 101, 1, "t"),
                                           rec("task_success", 2.0, 101, 2, "t", state="SUCCESS")])
    (run,) = by_id(read_executions(tmp_path))["t"]["executions"]
    assert (run["finished_at"], run["outcome"]) == (2.0, "success")


def test_retry_is_one_execution_per_run(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-100.jsonl", [rec("task_received", 1.0, 100, 1, "r", state="RECEIVED"),
                                           rec("task_received", 3.0, 100, 2, "r", state="RECEIVED")])
    write(tmp_path, "worker-0-101.jsonl", [
        rec("task_prerun", 1.1, 101, 1, "r", retries=0),
        rec("task_retry", 1.5, 101, 2, "r", state="RETRY", exc="ConnectionError"),
        rec("task_postrun", 1.6, 101, 3, "r", state="RETRY"),
        rec("task_prerun", 3.1, 101, 4, "r", retries=1),
        rec("task_postrun", 3.5, 101, 5, "r", state="SUCCESS")])
    r = by_id(read_executions(tmp_path))["r"]
    assert r["state"] == "SUCCESS"
    assert [(e["attempt"], e["retries"], e["outcome"], e["exception"]) for e in r["executions"]] == [
        (1, 0, "retry", "ConnectionError"), (2, 1, "success", None)]


def test_revoked_before_running_and_terminated_while_running(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-100.jsonl", [
        rec("task_received", 1.0, 100, 1, "early", state="RECEIVED"),
        rec("task_revoked", 1.2, 100, 2, "early", state="REVOKED", terminated=False),
        rec("task_received", 2.0, 100, 3, "term", state="RECEIVED"),
        rec("task_revoked", 3.0, 100, 4, "term", state="REVOKED", terminated=True, signum="15"),
        rec("task_received", 4.0, 100, 5, "term2", state="RECEIVED"),
        rec("task_revoked", 5.0, 100, 6, "term2", state="REVOKED", terminated=True, signum="15")])
    write(tmp_path, "worker-0-101.jsonl", [rec("task_prerun", 2.1, 101, 1, "term")])  # killed by the signal
    # SIGTERM raised in the body: the tracer's postrun runs, with no state
    write(tmp_path, "worker-0-102.jsonl", [rec("task_prerun", 4.1, 102, 1, "term2"), rec("task_postrun", 4.9, 102, 2, "term2")])
    tasks = by_id(read_executions(tmp_path))
    assert tasks["early"]["state"] == "REVOKED" and tasks["early"]["revoked_at"] == 1.2
    assert tasks["early"]["executions"] == []
    (run,) = tasks["term"]["executions"]
    assert tasks["term"]["state"] == "REVOKED"
    assert (run["finished_at"], run["outcome"]) == (3.0, "revoked")
    (run,) = tasks["term2"]["executions"]
    assert (run["finished_at"], run["outcome"]) == (4.9, "revoked")


def test_a_reused_pid_is_a_new_stream_even_after_a_torn_line(tmp_path: Path) -> None:
    # process 101 died mid-line; a later process got pid 101 and appended (its first write starts a new line)
    write(tmp_path, "worker-0-101.jsonl", [rec("task_prerun", 1.0, 101, 1, "a")], tail='{"v":1,"ev\n')
    write(tmp_path, "worker-0-101.jsonl", [rec("task_prerun", 9.0, 101, 1, "b"),
                                           rec("task_postrun", 9.5, 101, 2, "b", state="SUCCESS")])
    result = read_executions(tmp_path)
    tasks = by_id(result)
    assert tasks["a"]["executions"][0]["finished_at"] is None  # not closed by the other process's postrun
    assert tasks["b"]["executions"][0]["outcome"] == "success"
    assert len(result["probe"]["warnings"]) == 1 and "unparseable" in result["probe"]["warnings"][0]


def test_workers_timeline_since_and_raw_records(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-100.jsonl", [
        rec("worker_init", 1.0, 100, 1), rec("worker_ready", 2.0, 100, 2),
        rec("worker_shutting_down", 50.0, 100, 3, how="Warm", sig="SIGTERM", exitcode="0"),
        rec("worker_process_shutdown", 50.5, 100, 4, child_pid=101, exitcode="0"),
        rec("worker_shutdown", 51.0, 100, 5)])
    write(tmp_path, "worker-0-101.jsonl", [rec("worker_process_init", 1.5, 101, 1),
                                           rec("task_prerun", 10.0, 101, 2, "x"),
                                           rec("task_postrun", 11.0, 101, 3, "x", state="SUCCESS")])
    records = read_records(tmp_path)
    workers = worker_events(records.records)
    w = workers[NODE]
    assert w["hostname"] == HOST and w["main_pids"] == [100] and w["child_pids"] == [101]
    assert [e["event"] for e in w["events"]] == ["worker_init", "worker_process_init", "worker_ready",
                                                 "worker_shutting_down", "worker_process_shutdown",
                                                 "worker_shutdown"]
    assert w["events"][3]["how"] == "Warm"

    late = read_executions(tmp_path, since=20.0, include_records=True)
    assert late["tasks"] == [] and late["probe"]["loaded"]  # loaded before `since` still counts
    assert [r["event"] for r in late["records"]] == ["worker_shutting_down", "worker_process_shutdown",
                                                     "worker_shutdown"]


def test_missing_or_empty_dir_is_not_loaded(tmp_path: Path) -> None:
    for d in (tmp_path / "nope", tmp_path):
        result = read_executions(d)
        assert result["tasks"] == [] and not result["probe"]["loaded"] and result["probe"]["files"] == 0


def test_worker_name_falls_back_to_the_node_when_celery_hostname_does_not_name_it(tmp_path: Path) -> None:
    write(tmp_path, "worker-0-7.jsonl", [rec("task_prerun", 1.0, 7, 1, "t", hostname="celery@box")])
    (run,) = by_id(read_executions(tmp_path))["t"]["executions"]
    assert run["worker"] == NODE and run["hostname"] == "celery@box" and run["node"] == NODE
