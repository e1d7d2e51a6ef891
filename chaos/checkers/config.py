"""The knobs of the checkers: what the target promises (at-least-once?) and what the gate tolerates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds and promises the checkers judge a history against.

    ``duplicates_allowed``: the target is at-least-once, so duplicated executions are reported, not failed.
    ``latency_p99_ms``: submit p99 outside fault windows must not exceed this, once there are
    ``latency_min_samples`` samples (fewer: the latency part is unknown).
    ``error_rate_max_in_faults``: submit error rate tolerated inside fault windows (1.0: report only).
    ``fault_grace_s``: requests this long after a fault ended still count as in-fault (recovery time).
    ``clock_skew_s``: tolerance when comparing client wall times with the target's ledger times.
    ``max_evidence``: cap on findings of one kind a checker emits (the stats keep the full counts).

    The target's promises (copied from its contract by ``for_target``; the defaults are Celery's own):
    ``unknown_ids``: "pending" (AsyncResult answers PENDING for any id) or "not-found" (404 is promised).
    ``broker_outage``: "fail-fast" (an error answer is correct while the broker is down) or "fallback".
    ``answer_within_s``: a submit during a fault must be answered (success or error) within this; longer is a hang.
    ``not_applicable``: checker name -> why it cannot judge this target (it abstains, the reason is reported).
    ``health_degraded`` / ``health_healthy``: what the health endpoint must say during a broker outage / after
    the heal (field -> accepted value or values), ``health_settle_s`` after the change.
    """

    duplicates_allowed: bool = False
    latency_p99_ms: float = 100.0
    latency_min_samples: int = 20
    error_rate_max_in_faults: float = 1.0
    terminal_states: tuple[str, ...] = ("SUCCESS", "FAILURE", "REVOKED")
    fault_grace_s: float = 1.0
    clock_skew_s: float = 0.0
    max_evidence: int = 50
    unknown_ids: str = "pending"
    broker_outage: str = "fail-fast"
    answer_within_s: float | None = None
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    health_degraded: Mapping[str, Any] = field(default_factory=dict)
    health_healthy: Mapping[str, Any] = field(default_factory=dict)
    health_settle_s: float = 1.0

    def is_terminal(self, state: str | None) -> bool:
        return state is not None and state in self.terminal_states

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["terminal_states"] = list(self.terminal_states)
        d["not_applicable"] = dict(self.not_applicable)
        d["health_degraded"] = dict(self.health_degraded)
        d["health_healthy"] = dict(self.health_healthy)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckConfig:
        """Build from JSON/TOML; unknown keys are ignored so older configs keep working."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if "terminal_states" in kw:
            kw["terminal_states"] = tuple(kw["terminal_states"])
        return cls(**kw)


def for_target(config: CheckConfig, target: Any) -> CheckConfig:
    """``config`` with the promises the target declares (or Celery's defaults where it declares nothing).

    Which checkers cannot judge this target, and why, is decided here once, so every run says the same.
    """
    from dataclasses import replace

    na = dict(config.not_applicable)
    if target.supports("cancel") is not None:
        na["revoked_ran"] = str(target.supports("cancel"))
    if target.supports("fallback") is not None:
        na["fallback_parity"] = str(target.supports("fallback"))
    health = target.http.health if target.http is not None else None
    if health is not None:
        config = replace(config, health_degraded=dict(health.degraded), health_healthy=dict(health.healthy))
    return replace(config, duplicates_allowed=config.duplicates_allowed or target.at_least_once,
                   unknown_ids=target.unknown_ids, broker_outage=target.broker_outage,
                   answer_within_s=target.broker_outage_within_s, not_applicable=na)
