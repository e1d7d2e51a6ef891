"""What to run and how to observe it: the description of one Celery project under test, and what it promises.

A target is data, not logic. It is read from the ``[tool.celery-chaos.target]`` table of a project's
``pyproject.toml`` (or built in Python), so the framework never imports the project it tests. Every key of the
*contract* (cancel, health, broker outage, unknown ids, idempotency, delivery, statuses, timing) is optional, and
a missing key means **Celery's own default behaviour**: no cancel endpoint, no health endpoint, submits fail fast
while the broker is down, ``AsyncResult`` answers PENDING for an id nobody submitted, no idempotency keys, and
effects expected once. The table is validated with pydantic; every problem is one sentence (exit 254).

Commands and environment values are templates filled by the cluster backend:

``{python}``      the target's interpreter (``python`` key, else the framework's) locally, ``python3`` in docker
``{host}``        the address the process must bind (``127.0.0.1`` locally, ``0.0.0.0`` in a container)
``{port}``        the port the API must listen on
``{redis_url}``   the broker URL as this role must use it (through its fault proxy when there is one)
``{redis_host}`` / ``{redis_port}``  the same, split
``{data_dir}``    a directory private to this cluster, shared by its API and workers
``{name}``        the node name (``worker-0``...), for ``--hostname``
``{concurrency}`` the worker pool size
"""

from __future__ import annotations

import difflib
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chaos.errors import BadArguments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TERMINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")
CELERY_STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
TABLE = "[tool.celery-chaos.target]"

# Keys older tables used, and what replaced them (said in the error, instead of a bare did-you-mean).
RENAMED = {
    "cancel_path": "cancel = { path = \"...\", method = \"DELETE\" }",
    "cancel_method": "cancel = { path = \"...\", method = \"DELETE\" }",
    "health_path": "health = { path = \"...\" }",
    "at_least_once": "delivery = \"at-least-once\"",
}


def env_strings(value: Any) -> Any:
    """An env table's scalars as the strings a process sees (TOML ``true`` -> ``"true"``, ``20`` -> ``"20"``);
    anything else is left for the model to refuse."""
    if isinstance(value, Mapping):
        return {str(k): (str(x).lower() if isinstance(x, bool) else str(x)) if isinstance(x, (str, int, float))
                else x for k, x in value.items()}
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TaskKind(_Model):
    """One kind of task the workload may submit: a request body (or a Celery task) and the outcome it must reach."""

    name: str = Field(min_length=1)
    body: dict[str, Any] = Field(default_factory=dict)  # the HTTP submit body
    task: str | None = None  # client = "celery": the registered task name for send_task
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    expect: Literal["SUCCESS", "FAILURE"] = "SUCCESS"  # its terminal state when nobody cancels it
    units: int = Field(default=1, ge=1, le=1_000_000)  # units of work (rows, steps): duration and effects


class Cancel(_Model):
    path: str  # contains {task_id}
    method: str = "DELETE"


class Health(_Model):
    """A health endpoint, optionally truthful about the broker: ``degraded`` fields must say so while the broker
    is down, ``healthy`` fields after the heal (each field: one value or a list of accepted values)."""

    path: str
    degraded: dict[str, str | list[str]] = Field(default_factory=dict)
    healthy: dict[str, str | list[str]] = Field(default_factory=dict)


class HttpContract(_Model):
    """How a generic client talks to the target's task API."""

    submit_path: str
    status_path: str  # contains {task_id}
    submit_method: str = "POST"
    task_id_field: str = "task_id"
    status_field: str = "status"
    result_field: str | None = None  # where the reply carries the result or the error (evidence)
    mode_field: str | None = None  # "celery" / "fallback": how a submit was accepted (fallback targets)
    priority_field: str | None = None  # a body field the workload sets to the plan's priority
    priority_range: tuple[int, int] = (0, 9)
    idempotency_header: str | None = None  # declared: a keyed resubmit must return the same task id
    token: str | None = None  # sent as "Authorization: Bearer ..."
    cancel: Cancel | None = None
    health: Health | None = None
    ready_path: str | None = None  # readiness when there is no health endpoint (else: accepts a connection)
    ledger_path: str | None = None  # ground-truth probe, see chaos.probes
    ledger_token: str | None = None
    statuses: dict[str, list[str]] = Field(default_factory=dict)  # Celery state -> the app's words for it

    @field_validator("statuses")
    @classmethod
    def _known_states(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [k for k in v if k not in CELERY_STATES]
        if unknown:
            raise ValueError(f"keys must be Celery states ({', '.join(CELERY_STATES)}), not {unknown}")
        return v

    @property
    def cancel_path(self) -> str | None:
        return self.cancel.path if self.cancel else None

    @property
    def probe_path(self) -> str | None:
        """The path that says the API is up: the health endpoint, else the declared ready path."""
        return self.health.path if self.health else self.ready_path

    def canonical_status(self, raw: Any) -> str:
        """The Celery state an app's status word stands for (unmapped words pass through unchanged)."""
        word = str(raw)
        for state, words in self.statuses.items():
            if word in words:
                return state
        return word


class Timing(_Model):
    stop_timeout_s: float = Field(default=30.0, gt=0, le=3600)  # a graceful stop waits this long, then SIGKILL
    quiesce_s: float = Field(default=30.0, gt=0, le=3600)  # after the heal, tasks must be terminal within this
    # The app's own recovery (a sweeper, a re-publisher) brings back a task Celery lost within this many seconds
    # of the heal. Unset: it has none, as Celery has none, so a task found gone is decided at once.
    recovery_s: float | None = Field(default=None, ge=0, le=3600)


class Image(_Model):
    requirements: list[str] = Field(default_factory=list)
    copy_paths: list[str] = Field(default_factory=list, alias="copy")


class Target(_Model):
    """Everything the framework needs to bring a Celery project up and judge it."""

    name: str = Field(min_length=1)
    api_command: str | None = Field(default=None, alias="api")
    worker_command: str = Field(alias="worker")
    client: Literal["http", "celery"] = "http"
    http: HttpContract | None = None
    kinds: tuple[TaskKind, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    workers: int = Field(default=2, ge=1, le=64)
    queues: tuple[str, ...] = ("celery",)
    worker_ready_log: str = r"ready\."
    cwd: str = "."  # where the commands run, relative to the pyproject's directory
    python: str | None = None  # the target's interpreter (may pin another Celery than the framework's)
    delivery: Literal["exactly-once", "at-least-once"] = "exactly-once"
    broker_outage: Literal["fail-fast", "fallback"] = "fail-fast"
    broker_outage_within_s: float = Field(default=2.0, gt=0, le=600)  # fail-fast: answer within this
    unknown_ids: Literal["pending", "not-found"] = "pending"
    timing: Timing = Field(default_factory=Timing)
    redis_persistence: Literal["aof", "none"] = "aof"
    image: Image = Field(default_factory=Image)
    description: str = ""
    root: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("env", mode="before")
    @classmethod
    def _env_values(cls, v: Any) -> Any:
        return env_strings(v)

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if self.client == "http":
            if self.api_command is None:
                raise ValueError("client = \"http\" needs an api command (or set client = \"celery\")")
            if self.http is None:
                raise ValueError("client = \"http\" needs a [tool.celery-chaos.target.http] table")
        if self.client == "celery":
            missing = [k.name for k in self.kinds if not k.task]
            if missing:
                raise ValueError(f"client = \"celery\" needs task = \"...\" in every kind (missing in {missing})")
        names = [k.name for k in self.kinds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task kind names must be unique ({dupes} repeat)")
        return self

    # -- derived views
    @property
    def at_least_once(self) -> bool:
        """Duplicated executions are reported, not failed (``delivery = "at-least-once"``)."""
        return self.delivery == "at-least-once"

    @property
    def image_requirements(self) -> tuple[str, ...]:
        return tuple(self.image.requirements)

    @property
    def image_copy(self) -> tuple[str, ...]:
        return tuple(self.image.copy_paths)

    @property
    def workdir(self) -> Path:
        """Where the target's commands run."""
        return (self.root / self.cwd).resolve()

    @property
    def interpreter(self) -> str:
        """The ``{python}`` of the local backend: the declared interpreter, else the framework's.

        A value with a slash is a path (relative to the pyproject's directory); a bare name is found on PATH.
        """
        if not self.python:
            return sys.executable
        if "/" in self.python:
            p = Path(self.python).expanduser()
            return str(p if p.is_absolute() else self.root / p)
        return self.python

    def supports(self, capability: str) -> str | None:
        """None when the target has ``capability``, else the reason it has not (said in the report as n/a)."""
        http = self.http
        reasons = {
            "cancel": None if (self.client == "celery" or (http and http.cancel)) else "the target declares no cancel",
            "fallback": None if self.broker_outage == "fallback"
            else "the target declares broker_outage = \"fail-fast\" (Celery's default: no fallback)",
            "api": None if self.api_command else "the target has no HTTP API",
            "idempotency": None if (http and http.idempotency_header) else "the target declares no idempotency header",
            "health": None if (http and http.health) else "the target declares no health endpoint",
        }
        if capability not in reasons:
            raise BadArguments(f"unknown capability {capability!r}; known: {', '.join(reasons)}")
        return reasons[capability]

    def render(self, template: str, **values: Any) -> str:
        """Fill a command or env template; an unknown placeholder is a clear error, not a KeyError."""
        try:
            return string.Formatter().vformat(template, (), _Strict(values))
        except KeyError as exc:
            raise BadArguments(f"target {self.name!r}: unknown placeholder {exc} in {template!r}") from None
        except (ValueError, IndexError) as exc:
            raise BadArguments(f"target {self.name!r}: bad template {template!r} ({exc})") from None

    def render_env(self, **values: Any) -> dict[str, str]:
        return {k: self.render(str(v), **values) for k, v in self.env.items()}

    def kind(self, name: str) -> TaskKind:
        for k in self.kinds:
            if k.name == name:
                return k
        raise BadArguments(f"target {self.name!r} has no task kind {name!r} (has: {[k.name for k in self.kinds]})")

    def with_env(self, env: Mapping[str, str]) -> Target:
        return self.model_copy(update={"env": {**self.env, **env}})


class _Strict(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


# --------------------------------------------------------------------------------------------- reading


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The TOML keys the model nested at ``loc`` accepts (for did-you-mean)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if info is None:
            for f in getattr(current, "model_fields", {}).values():
                if f.alias == part:
                    info = f
        if info is None:
            return []
        ann = info.annotation
        nested = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        for a in getattr(ann, "__args__", ()):  # tuple[TaskKind, ...]
            nested += [x for x in getattr(a, "__args__", ()) if isinstance(x, type) and issubclass(x, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    fields = getattr(current, "model_fields", {})
    return [f.alias or n for n, f in fields.items() if n != "root"]


def _where(loc: tuple[Any, ...], table: Mapping[str, Any]) -> str:
    """``[tool.celery-chaos.target.http]`` or ``kinds[2] ("slow")`` for an error location."""
    parts = [TABLE[1:-1]]
    node: Any = table
    for part in loc:
        if isinstance(part, int):
            name = node[part].get("name") if isinstance(node, list) and part < len(node) and isinstance(
                node[part], Mapping) else None
            parts[-1] += f"[{part}]" + (f" ({name!r})" if name else "")
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, Mapping) else None
    return ".".join(parts)


def explain(exc: ValidationError, table: Mapping[str, Any], where: str = TABLE) -> str:
    """One sentence for the first problem pydantic found (the rest are counted)."""
    errors = exc.errors(include_url=False)
    e = errors[0]
    loc = tuple(x for x in e["loc"] if x not in ("tuple[TaskKind, ...]",))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if e["type"] == "extra_forbidden":
        key = str(loc[-1])
        at = "[" + _where(loc[:-1], table) + "]"
        if key in RENAMED:
            return f"{at}: key {key!r} is no longer read; write {RENAMED[key]}{more}"
        close = difflib.get_close_matches(key, _fields_at(Target, loc[:-1]), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{at}: unknown key {key!r}{hint}{more}"
    if e["type"] == "missing":
        return f"[{_where(loc[:-1], table)}]: missing required key {str(loc[-1])!r}{more}"
    at = f"[{_where(loc[:-1], table)}] {loc[-1]}" if loc else where
    got = e.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    msg = str(e["msg"]).removeprefix("Value error, ")
    for word, toml in (("a valid tuple", "a list"), ("a valid list", "a list"), ("a valid dictionary", "a table"),
                       ("Tuple should", "List should"), (" after validation", "")):
        msg = msg.replace(word, toml)
    return f"{at}: {msg[:1].lower() + msg[1:]}{shown}{more}"


def target_from_table(table: Mapping[str, Any], root: Path) -> Target:
    """Build a Target from a ``[tool.celery-chaos.target]`` table (already parsed TOML)."""
    if not isinstance(table, Mapping):
        raise BadArguments(f"{TABLE} must be a table, not {type(table).__name__}")
    data = {"name": root.name, **table, "root": root}
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        raise BadArguments(explain(exc, table)) from None


def find_pyproject(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            return p
    raise BadArguments(f"no pyproject.toml found in {here} or its parents; pass --project or run from the project")


def load_config(pyproject: Path | None = None) -> dict[str, Any]:
    """The whole ``[tool.celery-chaos]`` table, or a clear error when there is none or the file is broken."""
    path = pyproject or find_pyproject()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise BadArguments(f"no such file: {path}") from None
    except IsADirectoryError:
        raise BadArguments(f"{path} is a directory, not a pyproject.toml") from None
    except UnicodeDecodeError:
        raise BadArguments(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadArguments(f"{path} is not valid TOML: {exc}") from None
    cfg = data.get("tool", {}).get("celery-chaos")
    if cfg is None:
        raise BadArguments(f"{path} has no [tool.celery-chaos] table; see the README for how to describe a target")
    if not isinstance(cfg, dict):
        raise BadArguments(f"{path}: [tool.celery-chaos] must be a table")
    return dict(cfg)


def load_target(pyproject: Path | None = None, name: str | None = None) -> Target:
    """The default target, or a named one from ``[tool.celery-chaos.targets.NAME]``.

    A named target is the default table with the named table's keys laid over it (its sub-tables, such as env and
    timing, merged key by key), which is how canaries differ from the reference service by one setting.
    """
    path = pyproject or find_pyproject()
    cfg = load_config(path)
    base = cfg.get("target")
    if base is None:
        raise BadArguments(f"{path}: [tool.celery-chaos] has no target table; see the README")
    if not isinstance(base, dict):
        raise BadArguments(f"{TABLE} must be a table, not {type(base).__name__}")
    base = dict(base)
    if name:
        variants = dict(cfg.get("targets", {}))
        for cname, table in cfg.get("canaries", {}).items():  # canary:NAME -> its target overrides
            if isinstance(table, dict):
                variants[f"canary:{cname}"] = {"description": table.get("description", ""), **table.get("target", {})}
        if name not in variants:
            raise BadArguments(f"unknown target {name!r}; known: {', '.join(sorted(variants)) or 'none'}")
        over = dict(variants[name])
        merged = {k: {**base[k], **v} for k, v in over.items()  # env, timing, http: one key at a time
                  if isinstance(v, dict) and isinstance(base.get(k), dict)}
        base = {**base, **over, **merged, "name": over.get("name", name)}
    return target_from_table(base, path.parent.resolve())
