"""``report.json``: the versioned, documented result of a run, the single source for junit.xml and report.html.

These types are the schema: every writer builds them, every reader (``chaos report``, the renderers, the canary
self-test) loads them, so a key cannot be spelled two ways. Unknown keys are kept (``extra="allow"``): fields
are added, never renamed, within a major version, and a newer report read by an older framework loses nothing.

Schema ``celery-chaos/report@1``:

``schema``        "celery-chaos/report@1"
``verdict``       "pass" | "fail" | "unknown"        (exit codes 0 | 1 | 2)
``exit_code``     the gate's exit code
``profile``, ``seed``, ``backend``, ``target``, ``started`` (ISO 8601), ``duration_s``
``versions``      {python, celery, kombu, redis (the target's), redis-server, celery-chaos, framework-python, backend}
``scenarios[]``   per scenario (:class:`ScenarioEntry`):
    ``name``, ``description``, ``verdict`` ("pass" | "fail" | "unknown" | "n/a"), ``duration_s``,
    ``reasons``    why it is n/a or undecided, and which checkers abstained and why (plain sentences)
    ``history`` (path relative to the report dir),
    ``logs`` (dir), ``replay`` (one command),
    ``faults[]``   {name, node, start_s, end_s, params, error}  (seconds since the scenario start)
    ``ops``        {f: {ok, fail, info}}  client operations by outcome
    ``checkers``   {name: true | false | "unknown" | "n/a"}
    ``findings[]`` {checker, kind, task_ids, message, evidence}
    ``metrics``    {submit_p50_ms, submit_p99_ms, submit_max_ms, submit_p99_ms_outside_faults, submits_ok, tasks,
                    terminal, throughput_tps, recovery_s[]: {fault, node, seconds}}  (only what was measured)
    ``errors[]``   what the nemesis or the probes could not do (a scenario with errors is "unknown" at best)
``bring_up_s``, ``property``  optional, from the gate
``canaries``      optional detection matrix (:class:`CanaryMatrix`, see chaos.canaries)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA = "celery-chaos/report@1"
EXIT = {"pass": 0, "fail": 1, "unknown": 2}
NOT_APPLICABLE: Final = "n/a"

RunVerdict = Literal["pass", "fail", "unknown"]
ScenarioVerdict = Literal["pass", "fail", "unknown", "n/a"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the keys of report.json)."""
        return self.model_dump(mode="python")


class FaultEntry(_Model):
    name: str
    node: str
    start_s: float
    end_s: float | None = None
    params: dict[str, Any] = {}
    error: str | None = None


class OpCounts(_Model):
    ok: int = 0
    fail: int = 0
    info: int = 0


class FindingEntry(_Model):
    checker: str
    kind: str
    task_ids: list[str] = []
    message: str = ""
    evidence: dict[str, Any] = {}


class ScenarioEntry(_Model):
    """One scenario's verdict, faults, findings and figures (a row of the summary, a section of the page)."""

    name: str
    description: str = ""
    verdict: ScenarioVerdict
    reasons: list[str] = []
    duration_s: float = 0
    history: str | None = None
    logs: str | None = None
    replay: str | None = None
    faults: list[FaultEntry] = []
    ops: dict[str, OpCounts] = {}
    checkers: dict[str, bool | str] = {}
    findings: list[FindingEntry] = []
    metrics: dict[str, Any] = {}  # only the figures that were measured: their keys vary (see the schema)
    errors: list[str] = []

    @property
    def bad_tasks(self) -> set[str]:
        """Every task id a finding names."""
        return {t for f in self.findings for t in f.task_ids}


class CanaryRow(_Model):
    """One row of the detection matrix: did the gate catch this canary, with which checker, how fast."""

    name: str
    description: str = ""
    expected: str  # the expected checkers, "/"-joined
    caught: bool = False
    detected_by: list[str] = []
    scenario: str | None = None
    seconds: float | None = None  # bring-up included
    bring_up_s: float | None = None
    faults: int | None = None
    task_ids: list[str] = []
    tried: list[str] = []
    error: str | None = None


class CanaryMatrix(_Model):
    rows: list[CanaryRow] = []
    all_caught: bool = False
    reference_passed: bool = False


class Report(_Model):
    """A whole run: its verdict, exit code, where it ran and every scenario."""

    schema_: str = Field(SCHEMA, alias="schema")  # ``schema`` would shadow BaseModel.schema
    verdict: RunVerdict
    exit_code: int
    profile: str | None = None
    seed: int | None = None
    backend: str = ""
    target: str = ""
    started: str = ""
    duration_s: float = 0
    versions: dict[str, Any] = {}
    scenarios: list[ScenarioEntry]
    canaries: CanaryMatrix | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="python", by_alias=True)
        if out.get("canaries") is None:
            out.pop("canaries", None)  # optional: only a canary self-test has a matrix
        return out


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")


def load_json(path: Path) -> Report:
    """A report.json written by a run; anything else is a ValueError with one sentence."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("celery-chaos/report@"):
        raise ValueError(f"{path} is not a celery-chaos report")
    if not isinstance(data.get("scenarios"), list) or not all(isinstance(s, dict) for s in data["scenarios"]):
        raise ValueError(f"{path} has no scenarios list")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path} is not a valid report: {where}: {first['msg']}") from None
