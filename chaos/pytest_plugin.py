"""The pytest plugin (entry point ``pytest11``): options, markers and fixtures over the same cluster API.

Fixtures:
``chaos_target``         the target from ``[tool.celery-chaos]`` (override it in a conftest to test another app)
``chaos_backend``        "local" or "docker" (``--chaos-backend``); docker tests skip where no daemon answers
``chaos_cluster``        a session-wide cluster, healed and reset before each test (fast)
``chaos_fresh_cluster``  a cluster of its own for one test (slow; for tests that break things for good)
``chaos_cluster_factory`` build clusters with other settings (persistence, worker count, env)
``chaos_seed``           the run's seed (``--chaos-seed``, else random and printed)
``chaos_report_dir``     where histories and reports go (``--chaos-report``), or None
``chaos``                a ``ChaosSession`` over ``chaos_cluster`` for writing your own chaos tests: submit, status,
                         cancel, inject / heal / ``with chaos.fault(...)`` / ``chaos.at(...)``, wait_for, quiesce,
                         ``verdict().assert_ok()``, ``run(plans, schedule)`` for Hypothesis examples

The target is the ``[tool.celery-chaos]`` table of ``--chaos-project``, else of the nearest ``pyproject.toml``
that has one, from the tests given on the command line up to pytest's rootdir, else of the rootdir's
``pyproject.toml``: ``cd examples/hardened && pytest tests`` judges that example even when a parent directory's
``pyproject.toml`` holds pytest's configuration. With ``--chaos-report DIR`` every test using ``chaos`` writes
``DIR/histories/<test>.jsonl`` (and a replayable ``DIR/replay/<test>.json``), and the session ends with
``report.html``, ``report.json`` and ``junit.xml`` for those tests, as the gate writes them.
"""

from __future__ import annotations

import atexit
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chaos.cluster.base import Persistence
from chaos.cluster.cleanup import kill_processes, our_processes, remove_containers, remove_leftovers
from chaos.errors import ChaosError
from chaos.target import Target, load_config, load_target

if TYPE_CHECKING:
    from chaos.report.model import ScenarioEntry
    from chaos.session import ChaosSession

REPORT_ENTRIES = pytest.StashKey[list["ScenarioEntry"]]()
REPORT_META = pytest.StashKey[dict[str, Any]]()

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
    g.addoption("--chaos-project", default=None,
                help="the pyproject.toml describing the target (default: the nearest one with a "
                     "[tool.celery-chaos] table above the tests, else the rootdir's)")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    if config.getoption("--chaos-seed", None) is None:
        config.option.chaos_seed = random.SystemRandom().randrange(2**31)
    config.stash[REPORT_ENTRIES] = []
    config.stash[REPORT_META] = {"started": time.time(), "t0": time.monotonic()}


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
    for item in items:  # a test using the ``chaos`` fixture is a chaos test (-m chaos selects it)
        if "chaos" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.chaos)
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


def _has_chaos_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "celery-chaos" not in text:
        return False
    try:
        load_config(path)
    except ChaosError:
        return "[tool.celery-chaos" in text  # broken, but meant for us: load_target says what is wrong
    return True


def target_pyproject(config: pytest.Config) -> Path:
    """The ``pyproject.toml`` the target comes from (see the module's docstring for the order)."""
    explicit = config.getoption("--chaos-project", None)
    here = Path(config.invocation_params.dir)
    if explicit:
        return (here / explicit).resolve()
    root = Path(config.rootpath).resolve()
    paths = [(here / str(a).split("::")[0]).resolve() for a in (config.args or [str(here)])]
    starts = [p if p.is_dir() else p.parent for p in paths]
    start = Path(os.path.commonpath([str(s) for s in starts])) if starts else here
    for d in (start, *start.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file() and _has_chaos_table(candidate):
            return candidate
        if d == root:
            break
    return root / "pyproject.toml"


@pytest.fixture(scope="session")
def chaos_target(request: pytest.FixtureRequest) -> Target:
    name = request.config.getoption("--chaos-target")
    try:
        return load_target(target_pyproject(request.config), name=name)
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


def _versions(config: pytest.Config, cluster: Any) -> dict[str, str]:
    """The versions a verdict depends on, read once per cluster (a subprocess of the target's interpreter)."""
    cache = config.stash[REPORT_META].setdefault("versions", {})
    if id(cluster) not in cache:
        from chaos.runner import versions

        try:
            cache[id(cluster)] = versions(cluster)
        except Exception:  # noqa: BLE001 - versions are evidence, never a reason to fail a test
            cache[id(cluster)] = {}
        config.stash[REPORT_META]["last_versions"] = cache[id(cluster)]
        config.stash[REPORT_META]["target"] = cluster.target.name
    return dict(cache[id(cluster)])


@pytest.fixture
def chaos(request: pytest.FixtureRequest, chaos_cluster: Any, chaos_report_dir: Path | None,
          chaos_seed: int) -> Iterator[ChaosSession]:
    """A ``ChaosSession`` over the shared cluster (reset before the test): one history for the test.

    At the end every fault still open is healed; with ``--chaos-report`` a test that never asked for a verdict
    is judged anyway, so the report has every chaos test.
    """
    from chaos.session import ChaosSession

    config = request.config
    selector = config.getoption("--chaos-target")
    rerun = f"python3 -m pytest '{request.node.nodeid}' --chaos-seed {chaos_seed}"
    if selector:
        rerun += f" --chaos-target {selector}"
    module = Path(str(getattr(request.node, "path", "test"))).stem
    session = ChaosSession(chaos_cluster, name=f"{module}.{request.node.name}", report_dir=chaos_report_dir,
                           seed=chaos_seed, rerun=rerun, selector=selector,
                           versions=_versions(config, chaos_cluster), description=request.node.nodeid)
    try:
        yield session
    finally:
        try:
            if chaos_report_dir is not None and session.active and session.last_verdict is None:
                try:
                    session.verdict()
                except ChaosError as exc:
                    session.errors.append(f"no verdict: {exc}")
        finally:
            session.close()
            if chaos_report_dir is not None:
                config.stash[REPORT_ENTRIES].extend(session.report_entries())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``--chaos-report``: report.html, report.json and junit.xml for the chaos tests of this session."""
    config = session.config
    report_dir = config.getoption("--chaos-report", None)
    entries = config.stash.get(REPORT_ENTRIES, [])
    if not report_dir or not entries or hasattr(config, "workerinput"):
        return
    from chaos.report import build_report, write_all

    meta = config.stash[REPORT_META]
    report = build_report(list(entries), profile="pytest", seed=config.getoption("--chaos-seed"),
                          backend=str(config.getoption("--chaos-backend")), target=meta.get("target", ""),
                          versions=meta.get("last_versions", {}), started=meta["started"],
                          duration=time.monotonic() - meta["t0"])
    meta["paths"] = write_all(report, Path(report_dir))
    meta["verdict"] = report.verdict


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    meta = config.stash.get(REPORT_META, {})
    if meta.get("paths"):
        terminalreporter.write_line(f"celery-chaos: {meta['verdict']}; report: {meta['paths']['html']}")
