"""Ground truth beyond the HTTP task API: the target's own ledger of executions and effects.

A target that offers ``http.ledger_path`` answers with the ledger schema documented in ``chaos.history``; the
checkers then see executions (who ran what, when) and effects, not only what clients were told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from chaos.errors import ClusterError

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster


def fetch_ledger(cluster: Cluster, since: float | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
    """The ledger, or None when the target declares no probe. A probe that fails is a ClusterError (exit 2)."""
    http = cluster.target.http
    if http is None or not http.ledger_path:
        return None
    headers = {"Authorization": f"Bearer {http.ledger_token}"} if http.ledger_token else {}
    params = {"since": since} if since is not None else None
    try:
        r = httpx.get(cluster.api_url + http.ledger_path, headers=headers, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ClusterError(f"ledger probe failed: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise ClusterError(f"ledger probe answered {r.status_code}: {r.text[:200]}")
    data = r.json()
    if not isinstance(data, dict) or "tasks" not in data:
        raise ClusterError("ledger probe answered JSON without a 'tasks' list")
    return data
