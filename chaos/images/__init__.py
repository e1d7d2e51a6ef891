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

The command line is the ``chaos`` CLI's: ``chaos images build [--offline-base|--public-base] [--rebuild]
[--keep N]`` and ``chaos images prune``. The package: ``common`` (labels, cache, client), ``base``,
``target_image`` (``build_images``, ``find_target_image``) and ``cleanup``; this module re-exports them.
"""

from __future__ import annotations

from chaos.images.base import OFFLINE_BASE, PUBLIC_BASE, build_offline_base, build_public_base, resolve_base
from chaos.images.cleanup import ImageRecord, Removal, clean_target_images, prune_images, select_removals
from chaos.images.common import (
    DEFAULT_KEEP,
    LABEL_IMAGE,
    LABEL_PYTHON,
    LABEL_TARGET,
    TARGET_REPO_PREFIX,
    cache_dir,
    docker_client,
)
from chaos.images.target_image import (
    build_images,
    build_target_image,
    find_target_image,
    image_name,
    requirements,
    target_image_tag,
    tree_hash,
)

__all__ = [
    "DEFAULT_KEEP", "LABEL_IMAGE", "LABEL_PYTHON", "LABEL_TARGET", "OFFLINE_BASE", "PUBLIC_BASE",
    "TARGET_REPO_PREFIX", "ImageRecord", "Removal", "build_images", "build_offline_base", "build_public_base",
    "build_target_image", "cache_dir", "clean_target_images", "docker_client", "find_target_image", "image_name",
    "prune_images", "requirements", "resolve_base", "select_removals", "target_image_tag", "tree_hash",
]
