"""The HTTP side: a clear 503 when the broker is away, and a status endpoint that survives failed tasks."""

from contextlib import asynccontextmanager

from celery.result import AsyncResult
from fastapi import Body, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from hardened.republish import Republisher
from hardened.worker import celery, create_task

republisher = Republisher(celery, celery.conf.broker_url)


@asynccontextmanager
async def lifespan(app: FastAPI):
    republisher.start()
    yield
    republisher.close()


app = FastAPI(lifespan=lifespan)


@app.post("/tasks", status_code=201)
def run_task(payload=Body(...)):  # noqa: B008 - the FastAPI idiom
    try:
        task_type = int(payload["type"])
    except (KeyError, TypeError, ValueError):
        raise HTTPException(422, "body must be {\"type\": <integer>}") from None
    try:
        task = create_task.delay(task_type)
        republisher.sent(task.id, create_task.name, [task_type])
    except (OperationalError, RedisError, OSError) as exc:
        raise HTTPException(503, f"the task queue is unavailable, try again: {type(exc).__name__}") from None
    return JSONResponse({"task_id": task.id}, status_code=201)


@app.get("/tasks/{task_id}")
def get_status(task_id: str):
    task_result = AsyncResult(task_id, app=celery)
    try:
        status = task_result.status
        result = task_result.result
    except (OperationalError, RedisError, OSError) as exc:
        raise HTTPException(503, f"the result store is unavailable, try again: {type(exc).__name__}") from None
    if isinstance(result, BaseException):  # a failed task's result is its exception: say it in words
        result = f"{type(result).__name__}: {result}"
    return JSONResponse({"task_id": task_id, "task_status": status, "task_result": result})
