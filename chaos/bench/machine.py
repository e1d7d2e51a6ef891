"""The machine a bench ran on, in its JSON: cores, memory, Python and the Celery/Redis versions."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from typing import Any

import psutil


def machine_info(redis_client: Any | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"cores": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
                           "platform": platform.platform(), "python": platform.python_version()}
    for key, pkg in (("celery", "celery"), ("kombu", "kombu"), ("redis_py", "redis")):
        try:
            out[key] = md.version(pkg)
        except md.PackageNotFoundError:
            out[key] = "?"
    out["redis_server"] = "?"
    if redis_client is not None:
        try:
            out["redis_server"] = str(redis_client.info("server").get("redis_version"))
        except Exception:  # noqa: BLE001
            pass
    return out

