"""How long the framework's own steps take: bring-up of each backend, and the default gate's wall time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.bench.figures import median, rounded
from chaos.target import Target


def measure_bring_up(target: Target, backend: str, runs: int) -> dict[str, Any]:
    """Cluster start -> every node ready (redis, proxy, api, 2 workers), ``runs`` times; teardown not counted."""
    from chaos.cluster.cluster import Cluster

    secs = []
    for _ in range(runs):
        with Cluster(target, backend=backend, workers=2) as c:
            secs.append(float(c.bring_up_seconds or 0))
    return {"seconds": rounded(median(secs), 2), "runs": [rounded(x, 2) for x in secs], "workers": 2}


def measure_gate_wall(target: Target, report_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from chaos.gate import Profile, run_gate
    from chaos.target import load_config

    cfg = load_config(target.root / "pyproject.toml") if (target.root / "pyproject.toml").is_file() else {}
    t0 = time.monotonic()
    outcome = run_gate(target, Profile.load("default", cfg), report_dir=report_dir, seed=1,
                       progress=lambda m: say(f"    {m}"))
    wall = time.monotonic() - t0
    say(f"    gate: exit {outcome.exit_code} in {wall:.0f}s")
    return {"wall_s": rounded(wall, 1), "exit_code": outcome.exit_code, "scenarios": len(outcome.results)}


def measure_docker_bring_up(target: Target, runs: int, say: Callable[[str], None], build: bool) -> dict[str, Any]:
    """Docker bring-up; the target image is built first when missing (``build``), its build time reported apart."""
    try:
        from chaos.images import build_images, docker_client, find_target_image

        client = docker_client(timeout=10)
        try:
            tag = find_target_image(target, client)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any reason is a skip reason
        return {"skipped": f"no Docker daemon answers ({type(exc).__name__}: {str(exc)[:160]})"}
    build_s = None
    if tag is None:
        if not build:
            return {"skipped": "the target image for the current source tree is not built (chaos images build)"}
        say("    building the target image (chaos images build) ...")
        t0 = time.monotonic()
        try:
            tag = str(build_images(target)["target"])
        except Exception as exc:  # noqa: BLE001
            return {"skipped": f"the target image could not be built: {type(exc).__name__}: {str(exc)[:200]}"}
        build_s = rounded(time.monotonic() - t0, 1)
    try:
        up = measure_bring_up(target, "docker", runs)
    except Exception as exc:  # noqa: BLE001
        return {"skipped": f"docker bring-up failed: {type(exc).__name__}: {str(exc)[:200]}"}
    return {**up, "image": tag, "image_build_s": build_s}
