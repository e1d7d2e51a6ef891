"""The Celery task: claim (fence), run the attempt, always ack.

A delivery that cannot claim (duplicate, late publish, revoked, another
attempt holds a valid lease) returns immediately and is acknowledged.
"""
from __future__ import annotations

import logging
import os

from . import ledger
from .celery_app import SYNC_TASK, app
from .config import get_settings
from .sync import run_attempt

log = logging.getLogger("service.tasks")


@app.task(name=SYNC_TASK, bind=True, acks_late=get_settings().task_acks_late, ignore_result=True)
def sync_file(self, task_id: str) -> str:
    claimed = ledger.claim(task_id, worker=self.request.hostname or "worker", pid=os.getpid(), mode=ledger.CELERY)
    if claimed is None:
        log.info("task %s: delivery not claimable (fenced/terminal); acked and ignored", task_id)
        return "ignored"
    attempt, file_id = claimed
    return run_attempt(task_id, attempt, file_id)
