"""The target image: the base + the target's requirements (wheels downloaded on the host) + its code in /app.

The tag is a hash of every input, so an unchanged target is not rebuilt; ``build_images`` builds (or finds) the
base and the target image, then drops the target's older unused images (``chaos.images.cleanup``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.errors import ClusterError, PrerequisiteMissing
from chaos.images.base import (
    DEFAULT_PATH,
    OFFLINE_BASE,
    PUBLIC_BASE,
    public_base_tag,
    python_of,
    resolve_base,
)
from chaos.images.cleanup import clean_target_images
from chaos.images.common import (
    DEFAULT_KEEP,
    Progress,
    cache_dir,
    docker_build,
    docker_client,
    emit,
    get_image,
    short_hash,
)

if TYPE_CHECKING:
    import docker

    from chaos.target import Target

EXTRA_REQUIREMENTS = ("async-timeout>=4.0.3",)  # redis-py needs it on Debian's 3.11.2 (marker < 3.11.3)
IMAGE_PINS_ENV = "CELERY_CHAOS_IMAGE_PINS"
IGNORE = ("__pycache__", "*.pyc", "*.pyo", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.egg-info",
          ".tox", ".venv", "node_modules", "*.db", "*.db-wal", "*.db-shm", ".DS_Store")

TARGET_DOCKERFILE = """\
# celery-chaos target image: base + /opt/venv (wheels downloaded on the host) + the target's code in /app
FROM {base}
COPY requirements.txt /build/requirements.txt
COPY wheels /build/wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /build/wheels \\
    -r /build/requirements.txt \\
 && rm -rf /build
ENV PATH=/opt/venv/bin:{path} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 VIRTUAL_ENV=/opt/venv
COPY app /app
WORKDIR /app
LABEL io.celery-chaos.image=target io.celery-chaos.target={target}
"""


def _ignored(name: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(name, pat) for pat in IGNORE)


def _walk(paths: Iterable[Path], root: Path) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_file():
            files.append(p)
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
            files.extend(Path(dirpath, f) for f in sorted(filenames) if not _ignored(f))
    return sorted(files, key=lambda f: str(f.relative_to(root)))


def _copy_paths(target: Target) -> list[Path]:
    out = []
    for rel in target.image_copy:
        p = (target.root / rel).resolve()
        if not p.exists():
            from chaos.errors import BadArguments

            raise BadArguments(f"[tool.celery-chaos.target.image] copy: {rel!r} does not exist under {target.root}")
        out.append(p)
    return out


def tree_hash(target: Target) -> str:
    h = hashlib.sha256()
    for f in _walk(_copy_paths(target), target.root):
        h.update(str(f.relative_to(target.root)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
        h.update(b"1" if os.access(f, os.X_OK) else b"0")
    return h.hexdigest()


def image_pins() -> list[str]:
    """Extra requirements for every target image from ``$CELERY_CHAOS_IMAGE_PINS`` (whitespace-separated).

    A CI matrix pins the containers' Celery with it (``celery[redis]==5.3.* kombu==5.3.*``): the pins are part of
    the image tag, so each version gets an image of its own and a plain run finds the unpinned one.
    """
    return os.environ.get(IMAGE_PINS_ENV, "").split()


def requirements(target: Target) -> list[str]:
    reqs = [*target.image_requirements, *image_pins()]
    for extra in EXTRA_REQUIREMENTS:
        if not any(r.split(">")[0].split("=")[0].strip().lower() == extra.split(">")[0] for r in reqs):
            reqs.append(extra)
    return reqs


def _platforms() -> list[str]:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    tags = ["manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux_2_31", "manylinux_2_34",
            "manylinux_2_35", "manylinux_2_36", "linux"]
    return [f"{t}_{arch}" for t in tags]


def download_wheels(reqs: list[str], python: str, progress: Progress = None) -> Path:
    """Wheels for the image's Python and platform, downloaded on the host, cached by requirement set."""
    plats = _platforms()
    key = short_hash("|".join(reqs), python, "|".join(plats))
    d = cache_dir() / "wheels" / f"py{python}-{key}"
    if (d / ".complete").is_file():
        emit(progress, f"wheels: cached {d}")
        return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    nodot = python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
           *[a for p in plats for a in ("--platform", p)], "--python-version", python, "--implementation", "cp",
           "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none", "-d", str(d), *reqs]
    emit(progress, "$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603
    for line in proc.stdout.splitlines():
        if line.startswith(("Saved", "Successfully")):
            emit(progress, line)
    if proc.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        raise PrerequisiteMissing(
            f"pip download of the image's wheels failed (is PyPI or a mirror reachable?):\n{proc.stderr[-3000:]}")
    (d / ".complete").write_text(json.dumps({"requirements": reqs, "python": python, "platforms": plats}))
    return d


def image_name(target: Target) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", target.name.lower()).strip("-._") or "target"
    return f"celery-chaos-{slug}"



def target_image_tag(target: Target, base_id: str, python: str) -> str:
    dockerfile = TARGET_DOCKERFILE.format(base="BASE", path=DEFAULT_PATH, target=target.name)
    key = short_hash(base_id, python, "|".join(requirements(target)), "|".join(_platforms()), dockerfile,
               tree_hash(target), "|".join(target.image_copy))
    return f"{image_name(target)}:{key}"


def build_target_image(client: docker.DockerClient, target: Target, base: str, progress: Progress = None,
                       *, rebuild: bool = False) -> str:
    base_img = get_image(client, base)
    if base_img is None:
        raise ClusterError(f"base image {base} vanished")
    python = python_of(base_img)
    tag = target_image_tag(target, base_img.id, python)
    if not rebuild and get_image(client, tag) is not None:
        emit(progress, f"target: {tag} present")
        return tag
    reqs = requirements(target)
    wheels = download_wheels(reqs, python, progress)
    with tempfile.TemporaryDirectory(prefix="celery-chaos-ctx-") as ctx:
        c = Path(ctx)
        (c / "Dockerfile").write_text(TARGET_DOCKERFILE.format(base=base, path=DEFAULT_PATH, target=target.name))
        (c / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (c / "wheels").mkdir()
        for w in wheels.glob("*.whl"):
            os.link(w, c / "wheels" / w.name) if _same_fs(w, c) else shutil.copy2(w, c / "wheels" / w.name)
        app = c / "app"
        app.mkdir()
        for src in _copy_paths(target):
            rel = src.relative_to(target.root.resolve())
            dst = app / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*IGNORE))
            else:
                shutil.copy2(src, dst)
        docker_build(client, ctx, tag, progress)
    return tag


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def build_images(target: Target, *, offline_base: bool | None = None, progress: Progress = None,
                 rebuild: bool = False, keep: int | None = DEFAULT_KEEP) -> dict[str, Any]:
    """Build (or find) the base and the target image. Idempotent: unchanged inputs give the same tag, no build.

    Then, unless ``keep`` is None, remove this target's older unused images, keeping the newest ``keep`` (>= 1);
    a failed cleanup is reported, never fatal (the build succeeded).

    Returns ``{"base": tag, "target": tag, "offline_base": bool, "removed": [refs], "kept": [tags],
    "seconds": {"base": s, "target": s, "total": s}}``.
    """
    if keep is not None and keep < 1:
        from chaos.errors import BadArguments

        raise BadArguments(f"--keep must be at least 1 (the image just built), not {keep}")
    client = docker_client(timeout=600)
    cleanup: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        base = resolve_base(client, offline_base, progress)
        t1 = time.monotonic()
        tag = build_target_image(client, target, base, progress, rebuild=rebuild)
        t2 = time.monotonic()
        if keep is not None:
            try:
                cleanup = clean_target_images(client, target, tag, keep=keep, progress=progress)
            except Exception as exc:  # noqa: BLE001 - the build is done; a cleanup hiccup must not undo it
                emit(progress, f"images: cleanup failed: {type(exc).__name__}: {exc}")
                cleanup = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
    return {"base": base, "target": tag, "offline_base": base == OFFLINE_BASE,
            **{k: v for k, v in cleanup.items() if k in ("removed", "kept", "skipped", "error")},
            "seconds": {"base": round(t1 - t0, 2), "target": round(t2 - t1, 2), "total": round(t2 - t0, 2)}}


def find_target_image(target: Target, client: docker.DockerClient | None = None) -> str | None:
    """The up-to-date target image tag if it is already built (either base), else None. No build, no pull."""
    own = client is None
    client = client or docker_client()
    try:
        for base in (PUBLIC_BASE, OFFLINE_BASE):
            img = get_image(client, base)
            if img is None:
                continue
            if base == PUBLIC_BASE:
                img = get_image(client, public_base_tag(img))
                if img is None:
                    continue
            tag = target_image_tag(target, img.id, python_of(img))
            if get_image(client, tag) is not None:
                return tag
        return None
    finally:
        if own:
            client.close()
