"""The ``chaos`` command: up, run, gate, check, report, images build, canaries, bench.

Exit codes (Jepsen's): 0 pass, 1 a checker found a violation, 2 could not decide (the stack did not come up, a
probe failed, a prerequisite is missing), 254 bad arguments. Errors the framework understands are one sentence,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chaos.errors import BadArguments, ChaosError
from chaos.target import Target, load_config, load_target

if TYPE_CHECKING:
    from chaos.report.model import Report

# Not a terminal (CI logs): 160 columns rather than rich's 80, so the verdict table keeps its reasons readable.
_WIDTH = shutil.get_terminal_size((160, 24)).columns
console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)


def say(message: str) -> None:
    """Progress and errors on stderr; user data is never read as rich markup."""
    console.print(message, markup=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        say(f"chaos: error: {message}")
        sys.exit(BadArguments.exit_code)


def _bounded(lo: int, hi: int) -> Any:
    """An argparse type: an integer in [lo, hi], else one sentence (exit 254)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {lo} to {hi}")
        return value

    return parse


WORKERS = _bounded(1, 64)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("local", "docker"), default=None, help="local processes or containers")
    p.add_argument("--target", default=None, help="a named target from [tool.celery-chaos.targets] "
                   "(canaries: canary:NAME)")
    p.add_argument("--project", type=Path, default=None, help="the project's pyproject.toml (default: found "
                   "from the current directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chaos", description="Chaos and resilience testing for Celery + Redis services.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("up", help="bring the target up and hold it until Ctrl-C")
    _common(p)
    p.add_argument("--workers", type=WORKERS, default=None, help="1 to 64 (default: the target's)")

    p = sub.add_parser("run", help="run named scenarios (or 'property', or a saved --scenario-file)")
    _common(p)
    p.add_argument("scenarios", nargs="*", help="scenario names; 'list' to list them")
    p.add_argument("--scenario-file", type=Path, action="append", default=[], help="replay a saved scenario")
    p.add_argument("--seed", type=_bounded(0, 2**63 - 1), default=None)
    p.add_argument("--budget", type=_bounded(1, 1000), default=4, help="Hypothesis examples for 'property'")
    p.add_argument("--report", type=Path, default=Path("chaos-report"))
    p.add_argument("--workers", type=WORKERS, default=None, help="1 to 64 (default: the target's)")

    p = sub.add_parser("gate", help="the pre-release gate: run a profile, write reports, exit 0/1/2")
    _common(p)
    p.add_argument("--profile", default="default")
    p.add_argument("--seed", type=_bounded(0, 2**63 - 1), default=None)
    p.add_argument("--report", type=Path, default=Path("chaos-report"))
    p.add_argument("--canaries", action="store_true", help="run the profile against every canary as well")

    p = sub.add_parser("check", help="re-check a saved history (JSONL)")
    p.add_argument("history", type=Path)
    p.add_argument("--duplicates-allowed", action="store_true")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")

    p = sub.add_parser("report", help="re-render report.html and junit.xml from a report directory")
    p.add_argument("dir", type=Path)

    p = sub.add_parser("images", help="container images for the docker backend")
    isub = p.add_subparsers(dest="images_command", required=True, parser_class=_Parser)
    b = isub.add_parser("build", help="build the base and target images, then drop the target's older images")
    _common(b)
    g = b.add_mutually_exclusive_group()
    g.add_argument("--offline-base", dest="offline_base", action="store_true", default=None,
                   help="build the base with debootstrap + docker import (no registry needed)")
    g.add_argument("--public-base", dest="offline_base", action="store_false",
                   help="require the public python:3.11-slim-bookworm base (pulled if absent)")
    b.add_argument("--rebuild", action="store_true", help="rebuild the target image even when its tag exists")
    b.add_argument("--keep", type=int, default=2, metavar="N",
                   help="keep the newest N images of the target, the one built included; older ones no container "
                        "uses are removed (default 2)")
    isub.add_parser("prune", help="remove every target image no container uses (the base images stay)")

    p = sub.add_parser("canaries", help="list the canary targets (known failure modes)")
    _common(p)

    p = sub.add_parser("bench", help="measure latency, throughput, recovery and Redis memory")
    _common(p)
    p.add_argument("--json", type=Path, default=None, dest="json_out")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run of the benchmark)")
    p.add_argument("--only", default=None, metavar="SECTIONS",
                   help="comma-separated subset of: latency, submit, throughput, memory, recovery, proxy, bring_up, gate")
    p.add_argument("--memory-tasks", type=int, default=None, metavar="N",
                   help="finished tasks in the Redis memory run (default 20,000; 2,000 with --quick)")
    return parser


# --- commands ----------------------------------------------------------------------------------------------------
def _target(args: argparse.Namespace) -> Target:
    return load_target(args.project, name=getattr(args, "target", None))


def _backend(args: argparse.Namespace, default: str = "local") -> str:
    return args.backend or default


def cmd_up(args: argparse.Namespace) -> int:
    from chaos.cluster.cluster import Cluster

    target = _target(args)
    with Cluster(target, backend=_backend(args), workers=args.workers) as c:
        try:  # a Ctrl-C at any moment once up (even while these lines print) stops and cleans up, exit 0
            out.print(f"[bold]{target.name}[/] is up on {c.backend.name} in {c.bring_up_seconds:.1f}s")
            if c.api is not None:
                out.print(f"  api        {c.api_url}   (through the fault proxy: {c.proxied_api_url})")
            else:
                out.print(f"  producer   the framework's Celery client, through api_redis: {c.producer_values()['redis_url']}")
            if target.http and target.http.token:
                out.print(f"  token      {target.http.token}")
            assert c.redis is not None and c.proxy_node is not None
            out.print(f"  redis      {c.redis.url}")
            out.print(f"  toxiproxy  {c.proxy_node.api_url}   links: workers_redis, api_redis, client_api")
            out.print(f"  workers    {', '.join(w.name for w in c.workers)}")
            out.print(f"  logs       {c.workdir / 'logs'}")
            out.print("Ctrl-C to stop and clean up.")
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            out.print("stopping ...")
    return 0


def _print_summary(report: Report, paths: dict[str, Path]) -> None:
    table = Table(title=f"celery-chaos {report.profile or 'run'}: {report.verdict.upper()}")
    for col in ("scenario", "verdict", "faults", "findings", "submit p99", "seconds"):
        table.add_column(col)
    table.add_column("why (n/a, undecided)", overflow="fold", max_width=60)
    colors = {"pass": "green", "fail": "red", "unknown": "yellow", "n/a": "dim"}
    for s in report.scenarios:
        p99 = s.metrics.get("submit_p99_ms")
        table.add_row(escape(s.name), f"[{colors.get(s.verdict, 'white')}]{s.verdict}[/]",
                      ", ".join(sorted({f.name for f in s.faults})) or "-", str(len(s.findings)),
                      "-" if p99 is None else f"{p99:.0f} ms", str(s.duration_s),
                      escape("; ".join(s.reasons)) if s.verdict in ("n/a", "unknown") else "")
    out.print(table)
    abstained = sorted({r for s in report.scenarios if s.verdict not in ("n/a", "unknown")
                        for r in s.reasons if " n/a: " in r})
    if abstained:
        out.print("checkers that could not judge some scenarios (they abstain; the rest decide):", markup=False)
        for r in abstained:
            out.print(f"  {r}", markup=False)
    for s in report.scenarios:
        for f in s.findings[:5]:
            out.print(f"[red]{escape(s.name)}[/]: " + escape(f"{f.checker}/{f.kind}: {f.message} "
                      f"(tasks {', '.join(f.task_ids[:4])})"))
        if s.verdict == "fail" and s.replay:
            out.print(f"  replay: {s.replay}", markup=False)
        for e in s.errors:
            out.print(f"[yellow]{escape(s.name)}[/]: {escape(e)}")
    out.print(f"report: {paths['html']}  (also {paths['json'].name}, {paths['junit'].name})", markup=False)


def cmd_run(args: argparse.Namespace) -> int:
    from chaos.gate import Profile, run_gate
    from chaos.scenarios import SCENARIOS, build

    if args.scenarios == ["list"]:
        target = _target(args)
        for name in SCENARIOS:
            out.print(f"{name:24} {build(name, target).description}")
        return 0
    target = _target(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    names = [n for n in args.scenarios if n != "property"]
    thresholds = Profile.load("default", load_config(args.project))  # as the gate holds them (its [check] tables)
    scenarios = [build(n, target, thresholds.overrides_for(n)) for n in names]
    for f in args.scenario_file:
        scenarios.append(read_scenario_file(f, target))
    props = args.budget if "property" in args.scenarios else 0
    if not scenarios and not props:
        raise BadArguments("name at least one scenario (see `chaos run list`), 'property', or --scenario-file")
    profile = Profile("run", [], properties=props, workers=args.workers)
    outcome = run_gate(target, profile, report_dir=args.report, seed=seed, backend=_backend(args),
                       scenarios=scenarios, progress=say, selector=args.target)
    _print_summary(outcome.report, outcome.paths)
    return outcome.exit_code


def read_scenario_file(path: Path, target: Target) -> Any:
    """A saved scenario (``replay/*.json``), checked against the target: one sentence for anything wrong."""
    from chaos.nemesis import FAULTS
    from chaos.runner import Scenario

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadArguments(f"cannot read scenario file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("plans"), list):
        raise BadArguments(f"scenario file {path} must be a JSON object with a \"name\" string and a \"plans\" list "
                           f"(as written to replay/ by a run)")
    bad_plan = next((p for p in data["plans"] if not isinstance(p, dict) or "kind" not in p), None)
    if bad_plan is not None:
        raise BadArguments(f"scenario file {path}: every plan needs a \"kind\" (found {bad_plan!r})")
    try:
        scenario = Scenario.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadArguments(f"scenario file {path} is not a scenario: {exc}") from None
    for plan in scenario.plans:
        target.kind(plan.kind)  # an unknown kind is one sentence
    unknown = sorted({f.kind for f in scenario.schedule if f.kind not in FAULTS})
    if unknown:
        raise BadArguments(f"scenario file {path} names unknown faults {unknown}; known: {', '.join(FAULTS)}")
    return scenario


def cmd_gate(args: argparse.Namespace) -> int:
    from chaos.gate import Profile, run_gate

    config = load_config(args.project)
    profile = Profile.load(args.profile, config)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.canaries:
        from chaos.canaries import run_canaries

        return run_canaries(args, profile, seed, console, out)
    target = _target(args)
    say(f"gate: profile {profile.name}, {len(profile.scenarios)} scenarios + {profile.properties} "
                  f"generated examples, seed {seed}")
    outcome = run_gate(target, profile, report_dir=args.report, seed=seed, backend=_backend(args, profile.backend),
                       progress=say, selector=args.target)
    _print_summary(outcome.report, outcome.paths)
    return outcome.exit_code


def cmd_check(args: argparse.Namespace) -> int:
    from chaos.checkers import CheckConfig
    from chaos.checkers.compose import check_all
    from chaos.history import History

    if not args.history.is_file():
        raise BadArguments(f"no such history file: {args.history}")
    try:
        history = History.load(args.history)
    except (OSError, ValueError) as exc:
        raise BadArguments(f"cannot read {args.history}: {exc}") from None
    meta = history.meta
    check = (meta.config or {}).get("check", {}) if meta and isinstance(meta.config, dict) else {}
    try:
        cfg = CheckConfig.from_dict(check if isinstance(check, dict) else {})
    except (TypeError, ValueError) as exc:
        raise BadArguments(f"{args.history}: its meta line has a bad check config ({exc})") from None
    if args.duplicates_allowed:
        from dataclasses import replace

        cfg = replace(cfg, duplicates_allowed=True)
    if not history.meta and not history.ops:
        raise BadArguments(f"{args.history} holds no celery-chaos history ({len(history.load_warnings)} line(s) "
                           f"skipped)")
    verdict = check_all(history, cfg)
    for w in history.load_warnings[:5]:
        say(f"chaos check: {w}")
    if history.load_warnings:
        say(f"chaos check: skipped {len(history.load_warnings)} unreadable line(s) of {args.history}")
    if args.json:
        out.print_json(json.dumps(verdict.to_dict(), default=str))
    else:
        for name, r in verdict.results.items():
            out.print(f"{name:16} {r.valid}")
        for f in verdict.findings:
            out.print(f"[red]{f.checker}/{f.kind}[/]: " + escape(f"{f.message} (tasks {', '.join(f.task_ids[:6])})"))
        out.print(f"verdict: {verdict.valid}")
    return verdict.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    from chaos.report import load_json, write_all

    path = args.dir / "report.json"
    if not path.is_file():
        raise BadArguments(f"{args.dir} has no report.json")
    try:
        report = load_json(path)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    paths = write_all(report, args.dir)
    out.print(f"report: {paths['html']}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from chaos.images import build_images, prune_images

    if args.images_command == "prune":
        result = prune_images(progress=say)
    else:
        if args.keep < 1:
            raise BadArguments(f"--keep must be at least 1 (the image just built), not {args.keep}")
        target = _target(args)
        result = build_images(target, offline_base=args.offline_base, rebuild=args.rebuild, keep=args.keep,
                              progress=say)
    for k, v in result.items():
        out.print(f"{k}: {v}", markup=False)
    return 0


def cmd_canaries(args: argparse.Namespace) -> int:
    from chaos.canaries import list_canaries

    for c in list_canaries(args.project):
        out.print(f"{c['name']:28} expects {c['expected']:16} {c['description']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from chaos.bench import BenchOptions, run_bench

    options = BenchOptions(backend=_backend(args), json_out=args.json_out, quick=args.quick, only=args.only,
                           memory_tasks=args.memory_tasks)
    return run_bench(_target(args), options, console=console, out=out)


COMMANDS = {"up": cmd_up, "run": cmd_run, "gate": cmd_gate, "check": cmd_check, "report": cmd_report,
            "images": cmd_images, "canaries": cmd_canaries, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return COMMANDS[args.command](args)
    except ChaosError as exc:
        say(f"chaos: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("chaos: interrupted; everything started was stopped")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
