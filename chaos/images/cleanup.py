"""Which of our target images to remove after a build (older unused tags) or on ``chaos images prune``.

The choice is the pure ``select_removals`` (no Docker, tested alone); the rest asks the daemon and removes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaos.images.common import (
    DEFAULT_KEEP,
    LABEL_IMAGE,
    LABEL_TARGET,
    TARGET_REPO_PREFIX,
    Progress,
    docker_client,
    emit,
)

if TYPE_CHECKING:
    import docker

    from chaos.target import Target


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
                emit(progress, f"images: kept {ref} ({exc.explanation or exc})")
                continue
            layers += sum(1 for e in out or () if isinstance(e, dict) and "Deleted" in e)
            removed.append(ref)
            emit(progress, f"images: removed {ref} ({r.why})")
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
