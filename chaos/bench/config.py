"""The ``[tool.celery-chaos.bench]`` table: validated as written, then resolved against the target's task kinds."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chaos.bench.figures import rounded
from chaos.errors import BadArguments
from chaos.target import Target, TaskKind, env_strings, explain, load_config

BENCH_TABLE = "[tool.celery-chaos.bench]"


class BenchConfig(BaseModel):
    """The ``[tool.celery-chaos.bench]`` table, as written (kinds are checked against the target by ``plan``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = Field(default=None, min_length=1)  # latency and throughput submit it
    recovery_kind: str | None = Field(default=None, min_length=1)  # the worker-SIGKILL recovery kills it mid-task
    noop_env: dict[str, str] = Field(default_factory=dict)  # env over the target's: the work nearly free
    unit_ms: float | None = Field(default=None, ge=0, le=3_600_000)  # one unit of work, with the target's env

    @field_validator("noop_env", mode="before")
    @classmethod
    def _env_values(cls, v: Any) -> Any:
        return env_strings(v)


def _explain(exc: ValidationError, table: Mapping[str, Any]) -> str:
    """One sentence for a bad bench table (``chaos.target.explain``, named after this table and its keys)."""
    e = exc.errors(include_url=False)[0]
    if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
        key = str(e["loc"][0])
        n = len(exc.errors()) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        close = difflib.get_close_matches(key, list(BenchConfig.model_fields), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{BENCH_TABLE}: unknown key {key!r}{hint}{more}"
    return explain(exc, table, where=BENCH_TABLE).replace("[tool.celery-chaos.target", "[tool.celery-chaos.bench", 1)


def bench_config(table: Any) -> BenchConfig:
    """Validate a ``[tool.celery-chaos.bench]`` table (None: every default); a problem is one BadArguments sentence."""
    if table is None:
        return BenchConfig()
    if isinstance(table, BenchConfig):
        return table
    if not isinstance(table, Mapping):
        raise BadArguments(f"{BENCH_TABLE} must be a table, not {type(table).__name__}")
    try:
        return BenchConfig.model_validate(dict(table))
    except ValidationError as exc:
        raise BadArguments(_explain(exc, table)) from None


def load_bench_config(pyproject: Path) -> BenchConfig:
    """The bench table of a project's pyproject (``load_config(path)["bench"]``), or the defaults without one."""
    return bench_config(load_config(pyproject).get("bench"))


@dataclass(frozen=True)
class BenchPlan:
    """The bench table resolved against a target: the kinds themselves, and what is unknown."""

    kind: TaskKind
    recovery_kind: TaskKind
    noop_env: dict[str, str] = field(default_factory=dict)
    unit_ms: float | None = None

    @property
    def short_work_s(self) -> float | None:
        """The bare baseline's task duration for ``kind`` with the target's own env (None: unknown)."""
        return None if self.unit_ms is None else self.kind.units * self.unit_ms / 1000.0

    @property
    def noop_skipped(self) -> str | None:
        """Why there is no no-op throughput run (None: there is one)."""
        if self.noop_env:
            return None
        return (f"no noop_env in {BENCH_TABLE}: the target's work is not made free, so there is no no-op run to "
                "compare with a 0 ms bare task")

    @property
    def short_bare_skipped(self) -> str | None:
        if self.unit_ms is not None:
            return None
        return (f"no unit_ms in {BENCH_TABLE}: the duration of one {self.kind.name!r} task is unknown, so the bare "
                "baseline and the ratio cannot be computed")

    def settings(self) -> dict[str, Any]:
        short = self.short_work_s
        return {"kind": self.kind.name, "kind_units": self.kind.units, "recovery_kind": self.recovery_kind.name,
                "noop_env": dict(self.noop_env), "unit_ms": self.unit_ms, "row_work_ms_short": self.unit_ms,
                "bare_work_ms": {"noop": 0.0 if self.noop_skipped is None else None,
                                 "short": None if short is None else rounded(short * 1000.0, 3)}}


def _kind(target: Target, name: str, key: str) -> TaskKind:
    names = [k.name for k in target.kinds]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"it has {', '.join(map(repr, names))}"
        raise BadArguments(f"{BENCH_TABLE} {key}: the target has no task kind {name!r} ({hint})")
    k = target.kind(name)
    if k.expect != "SUCCESS":
        raise BadArguments(f"{BENCH_TABLE} {key}: task kind {name!r} is expected to fail; the bench needs one that "
                           "succeeds")
    return k


def plan(target: Target, table: Any = None) -> BenchPlan:
    """Resolve a bench table (a mapping, a ``BenchConfig`` or None) against ``target``; problems are BadArguments."""
    cfg = bench_config(table)
    ok = sorted((k for k in target.kinds if k.expect == "SUCCESS"), key=lambda k: k.units)
    if not ok:
        raise BadArguments(f"target {target.name!r} has no task kind that is expected to succeed; the bench needs one")
    kind = _kind(target, cfg.kind, "kind") if cfg.kind else ok[0]
    rec = _kind(target, cfg.recovery_kind, "recovery_kind") if cfg.recovery_kind else ok[-1]
    return BenchPlan(kind=kind, recovery_kind=rec, noop_env=dict(cfg.noop_env), unit_ms=cfg.unit_ms)


def project_plan(target: Target) -> BenchPlan:
    """The plan from the target's own pyproject (``target.root / "pyproject.toml"``), defaults without one."""
    path = target.root / "pyproject.toml"
    return plan(target, load_bench_config(path) if path.is_file() else None)
