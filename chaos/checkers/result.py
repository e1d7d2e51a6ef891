"""What a checker says: a verdict (true / false / "unknown"), the anomalies it found, and counts.

Verdicts merge like Jepsen's: false dominates unknown, which dominates true. Everything converts to plain
JSON so a report or a later ``chaos check`` run can read it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

UNKNOWN: Literal["unknown"] = "unknown"
Validity = bool | Literal["unknown"]


def merge_valid(verdicts: Iterable[Validity]) -> Validity:
    """False if any is false, else unknown if any is unknown, else true (true for none at all)."""
    merged: Validity = True
    for v in verdicts:
        if v is False:
            return False
        if v == UNKNOWN:
            merged = UNKNOWN
    return merged


def _valid_from_json(value: Any) -> Validity:
    if value is True or value is False:
        return bool(value)
    return UNKNOWN


@dataclass
class Finding:
    """One anomaly: which checker saw it, its kind, the tasks involved and the evidence (ops, ledger rows)."""

    checker: str
    kind: str
    task_ids: list[str]
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "kind": self.kind,
            "task_ids": list(self.task_ids),
            "message": self.message,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            checker=str(data["checker"]),
            kind=str(data["kind"]),
            task_ids=[str(t) for t in data.get("task_ids") or ()],
            message=str(data.get("message", "")),
            evidence=dict(data.get("evidence") or {}),
        )


@dataclass
class CheckResult:
    """The outcome of one checker (or of several composed: then ``stats`` is keyed by checker name)."""

    checker: str
    valid: Validity
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return [f.kind for f in self.findings]

    def findings_of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "valid": self.valid,
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            checker=str(data["checker"]),
            valid=_valid_from_json(data.get("valid")),
            findings=[Finding.from_dict(f) for f in data.get("findings") or ()],
            stats=dict(data.get("stats") or {}),
        )


def cap_per_kind(findings: Iterable[Finding], limit: int) -> list[Finding]:
    """Keep at most ``limit`` findings of each kind (a storm of one anomaly must not drown the others)."""
    seen: dict[str, int] = {}
    kept = []
    for f in findings:
        seen[f.kind] = seen.get(f.kind, 0) + 1
        if seen[f.kind] <= limit:
            kept.append(f)
    return kept
