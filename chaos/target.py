"""What to run and how to observe it: the description of one Celery project under test.

A target is data, not logic. It is read from the ``[tool.celery-chaos.target]`` table of a project's
``pyproject.toml`` (or built in Python, e.g. in a root ``conftest.py``), so the framework never imports the
project it tests. Commands and environment values are templates filled by the cluster backend:

``{python}``      the interpreter running the framework (local backend) or ``python3`` (docker)
``{host}``        the address the process must bind (``127.0.0.1`` locally, ``0.0.0.0`` in a container)
``{port}``        the port the API must listen on
``{redis_url}``   the broker URL as this role must use it (through its fault proxy when there is one)
``{redis_host}`` / ``{redis_port}``  the same, split
``{data_dir}``    a directory private to this cluster, shared by its API and workers
``{name}``        the node name (``worker-0``...), for ``--hostname``
``{concurrency}`` the worker pool size
"""

from __future__ import annotations

import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.errors import BadArguments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TERMINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass(frozen=True)
class TaskKind:
    """One kind of task the workload may submit: a request body and the outcome it must reach."""

    name: str
    body: dict[str, Any]
    expect: str = "SUCCESS"  # the terminal state a correct service gives it when nobody cancels it
    weight: int = 1
    units: int = 1  # units of work (rows, steps): how long it runs, and how many effects it must leave

    def __post_init__(self) -> None:
        if self.expect not in ("SUCCESS", "FAILURE"):
            raise BadArguments(f"task kind {self.name!r}: expect must be SUCCESS or FAILURE, not {self.expect!r}")


@dataclass(frozen=True)
class HttpContract:
    """How a generic client talks to the target's task API."""

    submit_path: str
    status_path: str  # contains {task_id}
    cancel_path: str  # contains {task_id}
    submit_method: str = "POST"
    cancel_method: str = "DELETE"
    task_id_field: str = "celery_task_id"
    status_field: str = "status"
    mode_field: str | None = "mode"
    priority_field: str | None = "priority"
    priority_range: tuple[int, int] = (0, 9)
    idempotency_header: str | None = "Idempotency-Key"
    token: str | None = None
    health_path: str = "/health"
    ledger_path: str | None = None  # ground-truth probe, see chaos.ledger
    ledger_token: str | None = None


@dataclass(frozen=True)
class Target:
    """Everything the framework needs to bring a Celery project up and judge it."""

    name: str
    api_command: str
    worker_command: str
    http: HttpContract
    kinds: tuple[TaskKind, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    worker_concurrency: int = 2
    workers: int = 2
    queues: tuple[str, ...] = ("celery",)
    worker_ready_log: str = r"ready\."
    root: Path = field(default_factory=Path.cwd)
    image_requirements: tuple[str, ...] = ()
    image_copy: tuple[str, ...] = ()
    at_least_once: bool = False  # True: duplicated executions are reported but do not fail the gate
    redis_persistence: str = "aof"  # "aof" or "none": how the broker keeps data across restarts
    description: str = ""

    def render(self, template: str, **values: Any) -> str:
        """Fill a command or env template; an unknown placeholder is a clear error, not a KeyError."""
        try:
            return string.Formatter().vformat(template, (), _Strict(values))
        except KeyError as exc:  # pragma: no cover - message path
            raise BadArguments(f"target {self.name!r}: unknown placeholder {exc} in {template!r}") from None

    def render_env(self, **values: Any) -> dict[str, str]:
        return {k: self.render(str(v), **values) for k, v in self.env.items()}

    def kind(self, name: str) -> TaskKind:
        for k in self.kinds:
            if k.name == name:
                return k
        raise BadArguments(f"target {self.name!r} has no task kind {name!r} (has: {[k.name for k in self.kinds]})")


class _Strict(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def _require(table: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise BadArguments(f"{where}: missing required key {key!r}")
    return table[key]


def target_from_table(table: Mapping[str, Any], root: Path) -> Target:
    """Build a Target from a ``[tool.celery-chaos.target]`` table (already parsed TOML)."""
    where = "[tool.celery-chaos.target]"
    http_t = dict(_require(table, "http", where))
    known_http = set(HttpContract.__dataclass_fields__)
    unknown = set(http_t) - known_http
    if unknown:
        raise BadArguments(f"{where}.http: unknown keys {sorted(unknown)}")
    if "priority_range" in http_t:
        http_t["priority_range"] = tuple(http_t["priority_range"])
    http = HttpContract(**http_t)
    kinds_t = _require(table, "kinds", where)
    if not kinds_t:
        raise BadArguments(f"{where}.kinds: at least one task kind is needed")
    kinds = tuple(TaskKind(**k) for k in kinds_t)
    image = table.get("image", {})
    return Target(
        name=str(table.get("name", root.name)),
        api_command=str(_require(table, "api", where)),
        worker_command=str(_require(table, "worker", where)),
        http=http,
        kinds=kinds,
        env=dict(table.get("env", {})),
        worker_concurrency=int(table.get("worker_concurrency", 2)),
        workers=int(table.get("workers", 2)),
        queues=tuple(table.get("queues", ("celery",))),
        worker_ready_log=str(table.get("worker_ready_log", r"ready\.")),
        root=root,
        image_requirements=tuple(image.get("requirements", ())),
        image_copy=tuple(image.get("copy", ())),
        at_least_once=bool(table.get("at_least_once", False)),
        redis_persistence=_persistence(table.get("redis_persistence", "aof")),
        description=str(table.get("description", "")),
    )


def _persistence(value: object) -> str:
    if value not in ("aof", "none"):
        raise BadArguments(f"redis_persistence must be 'aof' or 'none', not {value!r}")
    return str(value)


def find_pyproject(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / "pyproject.toml"
        if p.is_file():
            return p
    raise BadArguments(f"no pyproject.toml found in {here} or its parents; pass --target or run from the project")


def load_config(pyproject: Path | None = None) -> dict[str, Any]:
    """The whole ``[tool.celery-chaos]`` table, or a clear error when there is none."""
    path = pyproject or find_pyproject()
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    cfg = data.get("tool", {}).get("celery-chaos")
    if cfg is None:
        raise BadArguments(f"{path} has no [tool.celery-chaos] table; see the README for how to describe a target")
    return dict(cfg)


def load_target(pyproject: Path | None = None, name: str | None = None) -> Target:
    """The default target, or a named one from ``[tool.celery-chaos.targets.NAME]``.

    A named target is the default table with the named table's keys laid over it (env merged), which is how
    canaries differ from the reference service by one setting.
    """
    path = pyproject or find_pyproject()
    cfg = load_config(path)
    base = dict(_require(cfg, "target", "[tool.celery-chaos]"))
    if name:
        variants = dict(cfg.get("targets", {}))
        for cname, table in cfg.get("canaries", {}).items():  # canary:NAME -> its target overrides
            variants[f"canary:{cname}"] = {"description": table.get("description", ""), **table.get("target", {})}
        if name not in variants:
            raise BadArguments(f"unknown target {name!r}; known: {', '.join(sorted(variants)) or 'none'}")
        over = dict(variants[name])
        env = {**base.get("env", {}), **over.pop("env", {})}
        base = {**base, **over, "env": env, "name": over.get("name", name)}
    return target_from_table(base, path.parent)
