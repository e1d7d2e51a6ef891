"""Which images ``chaos images build`` / ``prune`` remove: the pure selection, no Docker needed."""

from __future__ import annotations

import pytest

from chaos.images import LABEL_IMAGE, LABEL_TARGET, ImageRecord, Removal, select_removals

REPO = "celery-chaos-data-sync"
T = {LABEL_IMAGE: "target", LABEL_TARGET: "data-sync"}


def img(n: int, *tags: str, labels: dict[str, str] | None = None) -> ImageRecord:
    return ImageRecord(id=f"sha256:{n:064x}", tags=tags, created=1_000 + n, labels=T if labels is None else labels)


def removed_refs(removals: list[Removal]) -> list[str]:
    return [ref for r in removals for ref in r.refs]


def test_keep_newest_two_including_the_one_just_built() -> None:
    images = [img(i, f"{REPO}:v{i}") for i in range(1, 6)]
    removals, kept = select_removals(images, in_use=[], keep=2, repository=REPO, target="data-sync",
                                     protect=[f"{REPO}:v5"])
    assert kept == [f"{REPO}:v5", f"{REPO}:v4"]
    assert removed_refs(removals) == [f"{REPO}:v3", f"{REPO}:v2", f"{REPO}:v1"]


def test_the_image_just_built_is_kept_even_when_older() -> None:
    """A reverted edit finds an old tag again: it stays, plus the newest other one."""
    images = [img(i, f"{REPO}:v{i}") for i in range(1, 5)]
    removals, kept = select_removals(images, in_use=[], keep=2, repository=REPO, target="data-sync",
                                     protect=[f"{REPO}:v1"])
    assert kept == [f"{REPO}:v1", f"{REPO}:v4"]
    assert removed_refs(removals) == [f"{REPO}:v3", f"{REPO}:v2"]


def test_images_used_by_a_container_are_never_removed() -> None:
    images = [img(i, f"{REPO}:v{i}") for i in range(1, 5)]
    removals, kept = select_removals(images, in_use=[images[0].id], keep=1, repository=REPO, target="data-sync",
                                     protect=[f"{REPO}:v4"])
    assert kept == [f"{REPO}:v4", f"{REPO}:v1"]
    assert removed_refs(removals) == [f"{REPO}:v3", f"{REPO}:v2"]


def test_other_targets_bases_and_foreign_images_are_left_alone() -> None:
    other = {LABEL_IMAGE: "target", LABEL_TARGET: "other"}
    images = [
        img(1, f"{REPO}:old"),
        img(2, "celery-chaos-other:x", labels=other),
        img(3, "celery-chaos-base:bookworm", labels={LABEL_IMAGE: "base"}),
        img(4, "celery-chaos-data-sync:unlabelled", labels={}),  # not built by us: no label
        img(5, f"{REPO}:mid", "registry.example/me/data-sync:pinned"),  # re-tagged by the user
        img(6, f"{REPO}:new"),
        img(7, f"{REPO}:newest"),
    ]
    removals, kept = select_removals(images, in_use=[], keep=2, repository=REPO, target="data-sync",
                                     protect=[f"{REPO}:newest"])
    assert kept == [f"{REPO}:newest", f"{REPO}:new"]
    # only our tag of the re-tagged image goes (docker then merely untags it)
    assert removed_refs(removals) == [f"{REPO}:mid", f"{REPO}:old"]


def test_untagged_images_of_the_target_go_after_a_rebuild() -> None:
    dangling = img(2)
    other_dangling = img(3, labels={LABEL_IMAGE: "target", LABEL_TARGET: "other"})
    used_dangling = img(4)
    images = [img(1, f"{REPO}:v1"), dangling, other_dangling, used_dangling]
    removals, _ = select_removals(images, in_use=[used_dangling.id], keep=2, repository=REPO, target="data-sync",
                                  protect=[f"{REPO}:v1"])
    assert removed_refs(removals) == [dangling.id]
    assert removals[0].why == "untagged"


def test_prune_removes_every_unused_target_image_and_keeps_bases() -> None:
    other = {LABEL_IMAGE: "target", LABEL_TARGET: "other"}
    base = img(1, "celery-chaos-base:bookworm", labels={LABEL_IMAGE: "base"})
    used = img(2, f"{REPO}:used")
    images = [base, used, img(3, f"{REPO}:a"), img(4, "celery-chaos-other:b", labels=other),
              img(5, labels=other)]
    removals, kept = select_removals(images, in_use=[used.id], keep=None)
    assert kept == [f"{REPO}:used"]
    assert removed_refs(removals) == ["celery-chaos-other:b", f"{REPO}:a", images[4].id]


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="keep"):
        select_removals([], in_use=[], keep=0)


def test_record_from_the_images_api() -> None:
    rec = ImageRecord.from_api({"Id": "sha256:ab", "RepoTags": ["<none>:<none>"], "Created": 12, "Labels": None})
    assert rec.tags == () and rec.created == 12 and rec.labels == {}
