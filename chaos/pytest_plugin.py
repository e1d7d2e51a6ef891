"""The pytest plugin (entry point ``pytest11``): options, markers and fixtures over the same cluster API.

Fixtures:
``chaos_target``         the target from ``[tool.celery-chaos]`` (override it in a conftest to test another app)
``chaos_backend``        "local" or "docker" (``--chaos-backend``); docker tests skip where no daemon answers
``chaos_cluster``        a session-wide cluster, healed and reset before each test (fast)
``chaos_fresh_cluster``  a cluster of its own for one test (slow; for tests that break things for good)
``chaos_cluster_factory`` build clusters with other settings (persistence, worker count, env)
``chaos_seed``           the run's seed (``--chaos-seed``, else random and printed)
``chaos_report_dir``     where histories and reports go (``--chaos-report``), or None
"""

from __future__ import annotations

import atexit
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.cluster.base import Persistence
from chaos.cluster.cleanup import kill_processes, our_processes, remove_containers, remove_leftovers
from chaos.errors import ChaosError
from chaos.target import Target, load_target

MARKERS = {
    "chaos": "a chaos scenario: brings a real stack up and injects faults",
    "docker": "needs a Docker daemon (skipped with a reason where none answers)",
    "canary": "runs the gate against a deliberately broken variant of the target",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("celery-chaos")
    g.addoption("--chaos-backend", choices=("local", "docker"), default=os.environ.get("CHAOS_BACKEND", "local"),
                help="where nodes run: local processes (default) or Docker containers")
    g.addoption("--chaos-seed", type=int, default=None, help="seed for workloads and fault schedules")
    g.addoption("--chaos-report", default=None, help="directory for histories, logs and reports")
    g.addoption("--chaos-workers", type=int, default=None, help="number of workers (default: the target's)")
    g.addoption("--chaos-target", default=None, help="a named target from [tool.celery-chaos.targets]")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    if config.getoption("--chaos-seed", None) is None:
        config.option.chaos_seed = random.SystemRandom().randrange(2**31)


def pytest_report_header(config: pytest.Config) -> str:
    return f"celery-chaos: backend={config.getoption('--chaos-backend')} seed={config.getoption('--chaos-seed')}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A crashed earlier run may have left processes or containers: remove them before starting anything."""
    if hasattr(session.config, "workerinput"):
        return  # xdist workers: the controller cleaned already
    remove_leftovers()


def _docker_available() -> str | None:
    """None when a Docker daemon answers, else the reason to skip."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'celery-chaos[docker]')"
    try:
        c = docker.from_env(timeout=5)
        c.ping()
        c.close()
    except Exception as exc:  # noqa: BLE001
        return f"no Docker daemon answers ({type(exc).__name__})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = config.getoption("--chaos-backend")
    needs_docker = [i for i in items if i.get_closest_marker("docker")]
    if backend == "docker":
        needs_docker = [i for i in items if i.get_closest_marker("chaos") or i.get_closest_marker("docker")]
    if not needs_docker:
        return
    reason = _docker_available()
    if reason:
        for item in needs_docker:
            item.add_marker(pytest.mark.skip(reason=reason))


@atexit.register
def _kill_what_we_started() -> None:
    """Last line of defence (e.g. an exception in a finalizer): nothing of this process outlives it."""
    mine = [p for p in our_processes() if _owner(p) == os.getpid()]
    if mine:
        kill_processes(mine)


def _owner(proc: Any) -> int | None:
    try:
        v = proc.environ().get("CELERY_CHAOS_OWNER", "")
        return int(v) if v.isdigit() else None
    except Exception:  # noqa: BLE001
        return None


@pytest.fixture(scope="session")
def chaos_target(request: pytest.FixtureRequest) -> Target:
    name = request.config.getoption("--chaos-target")
    try:
        return load_target(Path(request.config.rootpath) / "pyproject.toml", name=name)
    except ChaosError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def chaos_backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--chaos-backend"))


@pytest.fixture(scope="session")
def chaos_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--chaos-seed"))


@pytest.fixture(scope="session")
def chaos_report_dir(request: pytest.FixtureRequest) -> Path | None:
    d = request.config.getoption("--chaos-report")
    if not d:
        return None
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


ClusterFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def chaos_cluster_factory(request: pytest.FixtureRequest, chaos_target: Target,
                          chaos_backend: str) -> Iterator[ClusterFactory]:
    """``factory(workers=None, persistence=Persistence(), env=None, target=None)`` -> a started Cluster.

    Every cluster it made is closed at the end of the session, whatever happened.
    """
    from chaos.cluster.cluster import Cluster

    made: list[Cluster] = []
    default_workers = request.config.getoption("--chaos-workers")

    def factory(workers: int | None = None, persistence: Persistence | None = None,
                env: dict[str, str] | None = None, target: Target | None = None) -> Cluster:
        c = Cluster(target or chaos_target, backend=chaos_backend,
                    workers=workers if workers is not None else default_workers,
                    persistence=persistence, env=env)
        made.append(c)
        try:
            c.start()
        except ChaosError as exc:
            c.close()
            made.remove(c)
            pytest.fail(f"the stack did not come up: {exc}", pytrace=False)
        return c

    def close(c: Cluster) -> None:
        c.close()
        made.remove(c)

    factory.close = close  # type: ignore[attr-defined]
    yield factory
    for c in reversed(made):
        try:
            c.close()
        except ChaosError:
            pass
    remove_containers(orphans_only=True)


@pytest.fixture(scope="session")
def _chaos_shared_cluster(chaos_cluster_factory: ClusterFactory) -> Any:
    return chaos_cluster_factory()


@pytest.fixture
def chaos_cluster(_chaos_shared_cluster: Any) -> Any:
    """The shared cluster, healed and emptied: tests share one bring-up but not each other's faults."""
    _chaos_shared_cluster.reset()
    yield _chaos_shared_cluster
    _chaos_shared_cluster.heal()


@pytest.fixture
def chaos_fresh_cluster(chaos_cluster_factory: ClusterFactory) -> Iterator[Any]:
    c = chaos_cluster_factory()
    yield c
    chaos_cluster_factory.close(c)  # type: ignore[attr-defined]
