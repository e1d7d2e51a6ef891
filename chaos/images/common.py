"""What every image step shares: the labels and names of our images, the cache, a Docker client that answers,
progress lines, and the legacy ``docker build`` stream."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.errors import ClusterError, PrerequisiteMissing

if TYPE_CHECKING:
    import docker

Progress = Callable[[str], None] | None

LABEL_IMAGE = "io.celery-chaos.image"
LABEL_PYTHON = "io.celery-chaos.python"
LABEL_TARGET = "io.celery-chaos.target"
TARGET_REPO_PREFIX = "celery-chaos-"
DEFAULT_KEEP = 2

DOCKER_HINT = (
    "no Docker daemon answers; start one (`dockerd >/var/log/dockerd.log 2>&1 &` as root, or "
    "`sudo systemctl start docker`) and check `docker info`; set DOCKER_HOST if it listens elsewhere"
)


def cache_dir() -> Path:
    base = os.environ.get("CELERY_CHAOS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "celery-chaos")
    p = Path(base)
    p.mkdir(parents=True, exist_ok=True)
    return p


def docker_client(timeout: int = 120) -> docker.DockerClient:
    """A client of a daemon that answers, or PrerequisiteMissing with how to fix it."""
    try:
        import docker as docker_sdk
    except ImportError:
        raise PrerequisiteMissing(
            "the docker SDK is not installed: pip install 'celery-chaos[docker]' (docker, testcontainers)") from None
    try:
        client = docker_sdk.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - every way of not answering means the same to the user
        raise PrerequisiteMissing(f"{DOCKER_HINT} ({type(exc).__name__}: {exc})") from None
    return client


def emit(progress: Progress, line: str) -> None:
    if progress is not None and line.strip():
        progress(line.rstrip("\n"))


def get_image(client: docker.DockerClient, ref: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def short_hash(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def docker_build(client: docker.DockerClient, ctx: str, tag: str, progress: Progress) -> None:
    """Legacy builder (no buildx here), forcerm so a failed RUN leaves no container; streams its lines."""
    last: list[str] = []
    for chunk in client.api.build(path=ctx, tag=tag, rm=True, forcerm=True, decode=True, pull=False):
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                last = [*last[-40:], line]
                emit(progress, line)
        elif "error" in chunk:
            raise ClusterError(f"docker build of {tag} failed: {chunk['error']}\n" + "\n".join(last[-25:]))
        elif "status" in chunk:
            emit(progress, str(chunk["status"]))
    if get_image(client, tag) is None:
        raise ClusterError(f"docker build of {tag} produced no image")
