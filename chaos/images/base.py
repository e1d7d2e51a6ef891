"""The base image: public (``python:3.11-slim-bookworm`` + apt) or offline (debootstrap + ``docker import``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.errors import ClusterError, PrerequisiteMissing
from chaos.images.common import (
    LABEL_IMAGE,
    LABEL_PYTHON,
    Progress,
    cache_dir,
    docker_build,
    emit,
    get_image,
    short_hash,
)

if TYPE_CHECKING:
    import docker

PUBLIC_BASE = "python:3.11-slim-bookworm"
OFFLINE_BASE = "celery-chaos-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "redis-server", "procps", "iproute2")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PUBLIC_BASE_DOCKERFILE = """\
# celery-chaos base for users with a registry: slim Python + redis-server, iproute2 (tc), procps
FROM {public}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends redis-server iproute2 procps \\
 && rm -rf /var/lib/apt/lists/*
LABEL io.celery-chaos.image=base io.celery-chaos.python={python}
"""


def _try_pull(client: docker.DockerClient, ref: str, progress: Progress, timeout: float = 20.0) -> bool:
    """Pull ``ref`` (tag explicit), giving up fast: no registry means False, not a hang."""
    import docker as docker_sdk

    repo, _, tag = ref.rpartition(":")
    emit(progress, f"pulling {ref} (fails fast without a registry)")
    try:
        quick = docker_sdk.from_env(timeout=int(timeout))
        try:
            quick.images.pull(repo, tag=tag)
        finally:
            quick.close()
        return True
    except Exception as exc:  # noqa: BLE001
        emit(progress, f"cannot pull {ref}: {type(exc).__name__}: {str(exc)[:200]}")
        return False


def python_of(image: Any) -> str:
    """The base's Python as ``major.minor`` (label of our bases, else PYTHON_VERSION of the official image)."""
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL_PYTHON):
        return ".".join(labels[LABEL_PYTHON].split(".")[:2])
    for kv in image.attrs.get("Config", {}).get("Env") or []:
        if kv.startswith("PYTHON_VERSION="):
            return ".".join(kv.split("=", 1)[1].split(".")[:2])
    return "3.11"


def _debian_mirror() -> str:
    return os.environ.get("CELERY_CHAOS_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def rootfs_tarball(progress: Progress = None, *, refresh: bool = False) -> Path:
    """The debootstrap'ed minbase rootfs as a tarball, cached (building it takes ~40 s, reading it ~0 s)."""
    key = hashlib.sha256(f"{SUITE}|minbase|{','.join(BASE_PACKAGES)}|{_debian_mirror()}".encode()).hexdigest()[:12]
    tar = cache_dir() / "rootfs" / f"{SUITE}-minbase-{key}.tar"
    if tar.is_file() and not refresh:
        emit(progress, f"rootfs: cached {tar}")
        return tar
    exe = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
    if exe is None:
        raise PrerequisiteMissing(
            "debootstrap is needed to build the offline base image: `apt-get install -y debootstrap` (Debian/Ubuntu),"
            " or use a machine that can pull python:3.11-slim-bookworm")
    if os.geteuid() != 0:
        raise PrerequisiteMissing("debootstrap must run as root to build the offline base image (run with sudo)")
    tar.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="celery-chaos-rootfs-", dir=tar.parent))
    root = work / "rootfs"
    try:
        cmd = [exe, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), _debian_mirror()]
        emit(progress, "$ " + " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if line.startswith(("I: Retrieving", "I: Validating")):
                continue  # hundreds of lines: keep the stream readable
            emit(progress, line)
        if proc.wait() != 0:
            raise ClusterError("debootstrap failed:\n" + "\n".join(tail))
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            d = root / junk
            if d.is_dir():
                for f in d.iterdir():
                    if f.is_file() and f.name != "lock":
                        f.unlink()
        partial = tar.with_suffix(".tar.part")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],  # noqa: S603,S607
                       check=True)
        partial.replace(tar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tar


def build_offline_base(client: docker.DockerClient, progress: Progress = None, *, rebuild: bool = False) -> str:
    """``celery-chaos-base:bookworm`` from a debootstrap rootfs (no registry needed, only a Debian mirror)."""
    if not rebuild and get_image(client, OFFLINE_BASE) is not None:
        emit(progress, f"base: {OFFLINE_BASE} present")
        return OFFLINE_BASE
    tar = rootfs_tarball(progress)
    python = "3.11"
    changes = [f"ENV PATH={DEFAULT_PATH}", "ENV LANG=C.UTF-8", f"LABEL {LABEL_IMAGE}=base",
               f"LABEL {LABEL_PYTHON}={python}", 'CMD ["/bin/bash"]']
    emit(progress, f"docker import {tar} {OFFLINE_BASE}")
    repo, _, tag = OFFLINE_BASE.rpartition(":")
    client.api.import_image_from_file(str(tar), repository=repo, tag=tag, changes=changes)
    if get_image(client, OFFLINE_BASE) is None:
        raise ClusterError(f"docker import did not produce {OFFLINE_BASE}")
    return OFFLINE_BASE


def public_base_dockerfile(public: Any) -> str:
    """The Dockerfile of our base over the pulled public image ``public``."""
    return PUBLIC_BASE_DOCKERFILE.format(public=PUBLIC_BASE, python=python_of(public))


def public_base_tag(public: Any) -> str:
    """Our base's tag over the pulled public image ``public`` (a hash of its id and our Dockerfile)."""
    return f"celery-chaos-base:slim-bookworm-{short_hash(public.id, public_base_dockerfile(public))}"


def build_public_base(client: docker.DockerClient, progress: Progress = None) -> str:
    public = get_image(client, PUBLIC_BASE)
    assert public is not None
    dockerfile = public_base_dockerfile(public)
    tag = public_base_tag(public)
    if get_image(client, tag) is not None:
        emit(progress, f"base: {tag} present")
        return tag
    with tempfile.TemporaryDirectory(prefix="celery-chaos-base-") as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile)
        docker_build(client, ctx, tag, progress)
    return tag


def resolve_base(client: docker.DockerClient, offline_base: bool | None, progress: Progress = None) -> str:
    """Which base to use. None: the public one if present or pullable, else (or when offline) the offline one.

    With None, an offline base already present is used without trying a pull first (no registry round trip).
    """
    if offline_base:
        return build_offline_base(client, progress)
    if get_image(client, PUBLIC_BASE) is not None:
        return build_public_base(client, progress)
    if offline_base is None and get_image(client, OFFLINE_BASE) is not None:
        emit(progress, f"base: {PUBLIC_BASE} absent, {OFFLINE_BASE} present: using it")
        return OFFLINE_BASE
    if _try_pull(client, PUBLIC_BASE, progress):
        return build_public_base(client, progress)
    if offline_base is False:
        raise PrerequisiteMissing(f"{PUBLIC_BASE} is neither present nor pullable; build with offline_base=True "
                                  "(`chaos images build --offline-base`)")
    return build_offline_base(client, progress)
