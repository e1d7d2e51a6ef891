"""Images for the ``docker`` backend: a base (Python 3 + redis-server + iproute2) and one image per target.

Two bases:

* public (default for users with a registry): ``python:3.11-slim-bookworm`` + apt ``redis-server iproute2 procps``,
  tagged ``celery-chaos-base:slim-bookworm-<hash>``;
* offline (no registry reachable): ``celery-chaos-base:bookworm``, made with ``debootstrap --variant=minbase`` from a
  Debian mirror (the rootfs tarball is cached under ``~/.cache/celery-chaos``) and ``docker import``.

The target image ``celery-chaos-<target>:<hash>`` is the base + the target's ``image_requirements`` installed with
``--no-index`` from wheels downloaded on the host (``pip download --only-binary=:all: --platform ...``), + the paths
of ``image_copy`` in ``/app``. The tag is a hash of every input, so an unchanged target is not rebuilt.

Every code edit gives a new target tag (~290 MB each, sharing their lower layers), so after a successful build the
older tags of the same repository that carry our label and that no container (running or stopped) uses are removed,
keeping the newest ``keep`` (default 2, the one just built included); ``prune_images`` removes every target image of
ours that no container uses and keeps the bases. The choice is the pure ``select_removals``.

Run ``python -m chaos.images build [--offline-base|--public-base] [--rebuild] [--keep N]`` or
``python -m chaos.images prune`` (``chaos images build|prune`` does the same).
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.errors import ClusterError, PrerequisiteMissing

if TYPE_CHECKING:
    import docker

    from chaos.target import Target

Progress = Callable[[str], None] | None

PUBLIC_BASE = "python:3.11-slim-bookworm"
OFFLINE_BASE = "celery-chaos-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "redis-server", "procps", "iproute2")
EXTRA_REQUIREMENTS = ("async-timeout>=4.0.3",)  # redis-py needs it on Debian's 3.11.2 (marker < 3.11.3)
LABEL_IMAGE = "io.celery-chaos.image"
LABEL_PYTHON = "io.celery-chaos.python"
LABEL_TARGET = "io.celery-chaos.target"
TARGET_REPO_PREFIX = "celery-chaos-"
DEFAULT_KEEP = 2
IMAGE_PINS_ENV = "CELERY_CHAOS_IMAGE_PINS"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IGNORE = ("__pycache__", "*.pyc", "*.pyo", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.egg-info",
          ".tox", ".venv", "node_modules", "*.db", "*.db-wal", "*.db-shm", ".DS_Store")

PUBLIC_BASE_DOCKERFILE = """\
# celery-chaos base for users with a registry: slim Python + redis-server, iproute2 (tc), procps
FROM {public}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends redis-server iproute2 procps \\
 && rm -rf /var/lib/apt/lists/*
LABEL io.celery-chaos.image=base io.celery-chaos.python={python}
"""

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


def _emit(progress: Progress, line: str) -> None:
    if progress is not None and line.strip():
        progress(line.rstrip("\n"))


def _image(client: docker.DockerClient, ref: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


# base ------------------------------------------------------------------------------------------------------
def _try_pull(client: docker.DockerClient, ref: str, progress: Progress, timeout: float = 20.0) -> bool:
    """Pull ``ref`` (tag explicit), giving up fast: no registry means False, not a hang."""
    import docker as docker_sdk

    repo, _, tag = ref.rpartition(":")
    _emit(progress, f"pulling {ref} (fails fast without a registry)")
    try:
        quick = docker_sdk.from_env(timeout=int(timeout))
        try:
            quick.images.pull(repo, tag=tag)
        finally:
            quick.close()
        return True
    except Exception as exc:  # noqa: BLE001
        _emit(progress, f"cannot pull {ref}: {type(exc).__name__}: {str(exc)[:200]}")
        return False


def _python_of(image: Any) -> str:
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
        _emit(progress, f"rootfs: cached {tar}")
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
        _emit(progress, "$ " + " ".join(cmd))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if line.startswith(("I: Retrieving", "I: Validating")):
                continue  # hundreds of lines: keep the stream readable
            _emit(progress, line)
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
    if not rebuild and _image(client, OFFLINE_BASE) is not None:
        _emit(progress, f"base: {OFFLINE_BASE} present")
        return OFFLINE_BASE
    tar = rootfs_tarball(progress)
    python = "3.11"
    changes = [f"ENV PATH={DEFAULT_PATH}", "ENV LANG=C.UTF-8", f"LABEL {LABEL_IMAGE}=base",
               f"LABEL {LABEL_PYTHON}={python}", 'CMD ["/bin/bash"]']
    _emit(progress, f"docker import {tar} {OFFLINE_BASE}")
    repo, _, tag = OFFLINE_BASE.rpartition(":")
    client.api.import_image_from_file(str(tar), repository=repo, tag=tag, changes=changes)
    if _image(client, OFFLINE_BASE) is None:
        raise ClusterError(f"docker import did not produce {OFFLINE_BASE}")
    return OFFLINE_BASE


def build_public_base(client: docker.DockerClient, progress: Progress = None) -> str:
    public = _image(client, PUBLIC_BASE)
    assert public is not None
    python = _python_of(public)
    dockerfile = PUBLIC_BASE_DOCKERFILE.format(public=PUBLIC_BASE, python=python)
    tag = f"celery-chaos-base:slim-bookworm-{_sha(public.id, dockerfile)}"
    if _image(client, tag) is not None:
        _emit(progress, f"base: {tag} present")
        return tag
    with tempfile.TemporaryDirectory(prefix="celery-chaos-base-") as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile)
        _docker_build(client, ctx, tag, progress)
    return tag


def resolve_base(client: docker.DockerClient, offline_base: bool | None, progress: Progress = None) -> str:
    """Which base to use. None: the public one if present or pullable, else (or when offline) the offline one.

    With None, an offline base already present is used without trying a pull first (no registry round trip).
    """
    if offline_base:
        return build_offline_base(client, progress)
    if _image(client, PUBLIC_BASE) is not None:
        return build_public_base(client, progress)
    if offline_base is None and _image(client, OFFLINE_BASE) is not None:
        _emit(progress, f"base: {PUBLIC_BASE} absent, {OFFLINE_BASE} present: using it")
        return OFFLINE_BASE
    if _try_pull(client, PUBLIC_BASE, progress):
        return build_public_base(client, progress)
    if offline_base is False:
        raise PrerequisiteMissing(f"{PUBLIC_BASE} is neither present nor pullable; build with offline_base=True "
                                  "(`python -m chaos.images build --offline-base`)")
    return build_offline_base(client, progress)


# target ----------------------------------------------------------------------------------------------------
def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


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
    key = _sha("|".join(reqs), python, "|".join(plats))
    d = cache_dir() / "wheels" / f"py{python}-{key}"
    if (d / ".complete").is_file():
        _emit(progress, f"wheels: cached {d}")
        return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    nodot = python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
           *[a for p in plats for a in ("--platform", p)], "--python-version", python, "--implementation", "cp",
           "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none", "-d", str(d), *reqs]
    _emit(progress, "$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603
    for line in proc.stdout.splitlines():
        if line.startswith(("Saved", "Successfully")):
            _emit(progress, line)
    if proc.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        raise PrerequisiteMissing(
            f"pip download of the image's wheels failed (is PyPI or a mirror reachable?):\n{proc.stderr[-3000:]}")
    (d / ".complete").write_text(json.dumps({"requirements": reqs, "python": python, "platforms": plats}))
    return d


def image_name(target: Target) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", target.name.lower()).strip("-._") or "target"
    return f"celery-chaos-{slug}"


def _docker_build(client: docker.DockerClient, ctx: str, tag: str, progress: Progress) -> None:
    """Legacy builder (no buildx here), forcerm so a failed RUN leaves no container; streams its lines."""
    last: list[str] = []
    for chunk in client.api.build(path=ctx, tag=tag, rm=True, forcerm=True, decode=True, pull=False):
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                last = [*last[-40:], line]
                _emit(progress, line)
        elif "error" in chunk:
            raise ClusterError(f"docker build of {tag} failed: {chunk['error']}\n" + "\n".join(last[-25:]))
        elif "status" in chunk:
            _emit(progress, str(chunk["status"]))
    if _image(client, tag) is None:
        raise ClusterError(f"docker build of {tag} produced no image")


def target_image_tag(target: Target, base_id: str, python: str) -> str:
    dockerfile = TARGET_DOCKERFILE.format(base="BASE", path=DEFAULT_PATH, target=target.name)
    key = _sha(base_id, python, "|".join(requirements(target)), "|".join(_platforms()), dockerfile,
               tree_hash(target), "|".join(target.image_copy))
    return f"{image_name(target)}:{key}"


def build_target_image(client: docker.DockerClient, target: Target, base: str, progress: Progress = None,
                       *, rebuild: bool = False) -> str:
    base_img = _image(client, base)
    if base_img is None:
        raise ClusterError(f"base image {base} vanished")
    python = _python_of(base_img)
    tag = target_image_tag(target, base_img.id, python)
    if not rebuild and _image(client, tag) is not None:
        _emit(progress, f"target: {tag} present")
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
        _docker_build(client, ctx, tag, progress)
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
                _emit(progress, f"images: cleanup failed: {type(exc).__name__}: {exc}")
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
            img = _image(client, base)
            if img is None:
                continue
            if base == PUBLIC_BASE:
                python = _python_of(img)
                bt = f"celery-chaos-base:slim-bookworm-{_sha(img.id, PUBLIC_BASE_DOCKERFILE.format(public=PUBLIC_BASE, python=python))}"
                img = _image(client, bt)
                if img is None:
                    continue
            tag = target_image_tag(target, img.id, _python_of(img))
            if _image(client, tag) is not None:
                return tag
        return None
    finally:
        if own:
            client.close()

# cleanup ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRecord:
    """What the cleanup needs of one image (``GET /images/json``): id, tags, creation time (epoch s), labels."""

    id: str
    tags: tuple[str, ...]
    created: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> ImageRecord:
        tags = tuple(t for t in (raw.get("RepoTags") or ()) if t and t != "<none>:<none>")
        return cls(id=str(raw["Id"]), tags=tags, created=int(raw.get("Created") or 0),
                   labels=dict(raw.get("Labels") or {}))


@dataclass(frozen=True)
class Removal:
    """Remove ``refs`` (tags of ours, or the id of an untagged image) of image ``id``; ``why`` for the report."""

    id: str
    refs: tuple[str, ...]
    why: str


def _repo_of(tag: str) -> str:
    return tag.rpartition(":")[0] if ":" in tag.rsplit("/", 1)[-1] else tag


def _ours(tag: str) -> bool:
    return _repo_of(tag).startswith(TARGET_REPO_PREFIX)


def select_removals(images: Iterable[ImageRecord], *, in_use: Iterable[str], keep: int | None = None,
                    repository: str | None = None, target: str | None = None,
                    protect: Iterable[str] = ()) -> tuple[list[Removal], list[str]]:
    """Which target images to remove; pure (no Docker), returns ``(removals, kept_tags)``.

    Only images labelled ``io.celery-chaos.image=target`` are candidates (bases never are); of their tags only
    ours (``celery-chaos-*``, and with ``repository`` only that repository's) are removed, so an image a user
    re-tagged elsewhere is merely untagged. Images used by a container (``in_use``: image ids) are never touched.

    * ``keep=None`` (prune): every candidate not in use goes, whatever its target.
    * ``keep=N`` (after a build of ``repository``): the tags in ``protect`` (the image just built) and the newest
      others up to N images in all stay; older ones go, and so do untagged (dangling: a ``--rebuild`` re-used
      their tag) images labelled with ``target``.
    """
    if keep is not None and keep < 1:
        raise ValueError("keep must be >= 1 (the image just built is always kept)")
    used = set(in_use)
    protected = set(protect)
    candidates: list[ImageRecord] = []
    dangling: list[ImageRecord] = []
    for img in images:
        if img.labels.get(LABEL_IMAGE) != "target":
            continue
        if target is not None and keep is not None and img.labels.get(LABEL_TARGET) != target:
            continue
        if not img.tags:
            dangling.append(img)
            continue
        mine = tuple(t for t in img.tags if _ours(t) and (repository is None or _repo_of(t) == repository))
        if mine:
            candidates.append(ImageRecord(img.id, mine, img.created, img.labels))
    removals: list[Removal] = []
    kept: list[str] = []
    if keep is None:
        for img in sorted(candidates, key=lambda i: (-i.created, i.id)):
            if img.id in used:
                kept.extend(img.tags)
            else:
                removals.append(Removal(img.id, img.tags, "pruned"))
    else:
        ordered = sorted(candidates, key=lambda i: (not (set(i.tags) & protected), -i.created, i.id))
        slots = keep
        for img in ordered:
            if slots > 0:
                slots -= 1
                kept.extend(img.tags)
            elif img.id in used:
                kept.extend(img.tags)
            else:
                removals.append(Removal(img.id, img.tags, f"older than the newest {keep}"))
    for img in sorted(dangling, key=lambda i: (-i.created, i.id)):
        if img.id not in used and (keep is None or target is None or img.labels.get(LABEL_TARGET) == target):
            removals.append(Removal(img.id, (img.id,), "untagged"))
    return removals, kept


def _images_in_use(client: docker.DockerClient) -> set[str]:
    """Ids of the images of every container, running or not (a stopped one still pins its image)."""
    return {str(c.get("ImageID") or c.get("Image")) for c in client.api.containers(all=True)}


def _target_records(client: docker.DockerClient) -> list[ImageRecord]:
    raw = client.api.images(filters={"label": f"{LABEL_IMAGE}=target"})
    return [ImageRecord.from_api(r) for r in raw]


def _remove(client: docker.DockerClient, removals: list[Removal], progress: Progress) -> dict[str, Any]:
    import docker.errors

    removed: list[str] = []
    skipped: list[str] = []
    layers = 0
    for r in removals:
        for ref in r.refs:
            try:
                out = client.api.remove_image(ref, force=False, noprune=False)
            except docker.errors.NotFound:
                continue  # another cleanup got there first
            except docker.errors.APIError as exc:  # 409: a container appeared meanwhile, or a child image
                skipped.append(f"{ref}: {exc.explanation or exc}")
                _emit(progress, f"images: kept {ref} ({exc.explanation or exc})")
                continue
            layers += sum(1 for e in out or () if isinstance(e, dict) and "Deleted" in e)
            removed.append(ref)
            _emit(progress, f"images: removed {ref} ({r.why})")
    return {"removed": removed, "skipped": skipped, "deleted_layers": layers}


def clean_target_images(client: docker.DockerClient, target: Target, current: str, *, keep: int = DEFAULT_KEEP,
                        progress: Progress = None) -> dict[str, Any]:
    """After a build of ``current``: remove this target's older unused tags, keeping the newest ``keep``."""
    removals, kept = select_removals(_target_records(client), in_use=_images_in_use(client), keep=keep,
                                     repository=_repo_of(current), target=target.name, protect=[current])
    return {"kept": kept, **_remove(client, removals, progress)}


def prune_images(*, progress: Progress = None, client: docker.DockerClient | None = None) -> dict[str, Any]:
    """Remove every target image of ours (any target) that no container uses; the bases stay."""
    own = client is None
    client = client or docker_client(timeout=300)
    try:
        removals, kept = select_removals(_target_records(client), in_use=_images_in_use(client), keep=None)
        return {"kept": kept, **_remove(client, removals, progress)}
    finally:
        if own:
            client.close()


def main(argv: list[str] | None = None) -> int:
    from chaos.errors import ChaosError
    from chaos.target import load_target

    ap = argparse.ArgumentParser(prog="chaos images", description="build the docker backend's images")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find) the base and the target image")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--offline-base", dest="offline", action="store_true", default=None,
                   help="debootstrap + docker import the base (no registry needed)")
    g.add_argument("--public-base", dest="offline", action="store_false", help=f"require {PUBLIC_BASE}")
    b.add_argument("--target", default=None, help="a named target from [tool.celery-chaos.targets]")
    b.add_argument("--pyproject", default=None, type=Path)
    b.add_argument("--rebuild", action="store_true", help="rebuild the target image even when its tag exists")
    b.add_argument("--keep", type=int, default=DEFAULT_KEEP,
                   help=f"keep the newest N images of the target, the one built included (default {DEFAULT_KEEP})")
    b.add_argument("-q", "--quiet", action="store_true")
    pr = sub.add_parser("prune", help="remove every target image no container uses (the bases stay)")
    pr.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        if args.cmd == "prune":
            out = prune_images(progress=progress)
        else:
            target = load_target(args.pyproject, name=args.target)
            out = build_images(target, offline_base=args.offline, rebuild=args.rebuild, keep=args.keep,
                               progress=progress)
    except ChaosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
