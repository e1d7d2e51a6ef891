"""The Celery side, as the tutorials write it: a broker URL, a result backend, one task. Celery's defaults."""

import os
import time

from celery import Celery

celery = Celery(__name__)
celery.conf.broker_url = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
celery.conf.result_backend = os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/0")


@celery.task(name="create_task")
def create_task(task_type: int) -> bool:
    if task_type < 0:
        raise ValueError(f"task type {task_type} is not a valid type")
    time.sleep(task_type * 0.1)
    return True
