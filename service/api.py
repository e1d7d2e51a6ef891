"""HTTP routes.  Status always comes from the DB ledger, never the result backend."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Header, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from . import ledger
from .auth import JSON_BODY_LIMIT, MULTIPART_SLACK, require_admin, require_caller
from .config import get_settings
from .files import BadCSV, get_file, known_visible, parse_csv, store_file, visible

router = APIRouter()
Caller = Annotated[str, Depends(require_caller)]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"file_id": 1}, {"file_id": 2, "priority": 9}, {"file_id": 4, "priority": 0}]})
    file_id: int = Field(ge=1, le=2**62)
    priority: int = Field(5, ge=0, le=9)


# ------------------------------------------------------------------ response bodies (the OpenAPI contract)
State = Literal[ledger.ALL_STATES]  # type: ignore[valid-type]
Mode = Literal["celery", "fallback"]


class ErrorBody(BaseModel):
    """Every refusal the service itself makes (an HTTPException): one sentence."""
    detail: str


class ValidationIssue(BaseModel):
    """One FastAPI validation error, as the service returns it (``loc``, ``msg``, ``type``)."""
    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """422: FastAPI's validation errors for a malformed request, or one sentence for a well-formed request
    the service rejects (a CSV it cannot sync, a blank Idempotency-Key)."""
    detail: str | list[ValidationIssue]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: Literal["up", "down"]
    workers: int
    mode: Mode


class Uploaded(BaseModel):
    file_id: int
    rows: int


class FileView(BaseModel):
    file_id: int
    name: str
    rows: int
    created_at: float


class Submitted(BaseModel):
    celery_task_id: str
    status: State
    mode: Mode


class SyncResult(BaseModel):
    rows_synced: int
    file_id: int


class TaskView(BaseModel):
    celery_task_id: str
    status: State
    file_id: int
    priority: int
    mode: Mode
    attempts: int
    result: SyncResult | None
    error: str | None
    created_at: float
    updated_at: float


class Cancelled(BaseModel):
    celery_task_id: str
    status: Literal["REVOKED"]


class TaskPage(BaseModel):
    tasks: list[TaskView]
    total: int
    limit: int
    offset: int


class LedgerExecution(BaseModel):
    attempt: int
    worker: str
    pid: int
    started_at: float
    finished_at: float | None
    outcome: str | None


class LedgerTask(BaseModel):
    task_id: str
    state: State
    mode: Mode
    expected_effects: int
    effects: int
    revoked_at: float | None
    created_at: float
    executions: list[LedgerExecution]


class Ledger(BaseModel):
    service: Literal["data-sync"]
    generated_at: float
    tasks: list[LedgerTask]


def _err(description: str, model: type[BaseModel] = ErrorBody, **extra: Any) -> dict[str, Any]:
    return {"model": model, "description": description, **extra}


UNAUTHORIZED = _err("missing or invalid bearer token; decided from the headers, before the body is read",
                    headers={"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}})
UNAVAILABLE = _err("an unexpected error (e.g. the database): `temporarily unavailable: <error type>`")
BAD_BODY = _err("the body could not be parsed at all (e.g. JSON that is not UTF-8, broken multipart)")
# Every /api route: 401 (and 503); every /api route with a body also 400 and 413 (see auth.AuthBeforeBody).
API = {401: UNAUTHORIZED, 503: UNAVAILABLE}
API_BODY = {**API, 400: BAD_BODY}


def _task_view(t: dict) -> dict:
    result = t.get("result")
    if result:
        try:
            result = json.loads(result)
        except ValueError:
            pass
    return {"celery_task_id": t["task_id"], "status": t["status"], "file_id": t["file_id"],
            "priority": t["priority"], "mode": t["mode"], "attempts": t["attempts"], "result": result,
            "error": t.get("error"), "created_at": t["created_at"], "updated_at": t["updated_at"]}


def _not_found(what: str = "task") -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


@router.get("/health", response_model=Health, responses={503: UNAVAILABLE})
async def health(request: Request) -> dict:
    return request.app.state.health.snapshot()


@router.post("/api/files", status_code=201, response_model=Uploaded, responses={
    **API_BODY,
    413: _err(f"the file is larger than MAX_UPLOAD_BYTES (the request, than that plus {MULTIPART_SLACK} bytes)"),
    422: _err("no `file` field, or a CSV that cannot be synced (header with unique names, >= 1 data row of "
              "the same width, UTF-8)", InvalidRequest)})
async def upload_file(caller: Caller, file: Annotated[UploadFile, File()]) -> dict:
    limit = get_settings().max_upload_bytes
    raw = await file.read(limit + 1)
    if len(raw) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=f"file larger than {limit} bytes")
    try:
        rows = await asyncio.to_thread(parse_csv, raw)  # a 10 MB CSV takes about a second: not on the event loop
    except BadCSV as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from None
    fid = await asyncio.to_thread(lambda: store_file(file.filename or "upload.csv", rows, owner=caller))
    return {"file_id": fid, "rows": len(rows)}


@router.get("/api/files/{file_id}", response_model=FileView, responses={
    **API, 404: _err("no such file, or another caller's upload (indistinguishable)")})
async def read_file(caller: Caller, file_id: int) -> dict:
    f = await asyncio.to_thread(get_file, file_id, caller) if 0 < file_id < 2**62 else None
    if f is None:
        raise _not_found("file")
    return {"file_id": f["id"], "name": f["name"], "rows": f["rows"], "created_at": f["created_at"]}


Created = tuple[dict | None, str | None]  # (task row, ledger outcome); (None, None): not the caller's file


def create_many_now(requests: Sequence[tuple[str, int, int, str | None]]) -> list[Created] | None:
    """``create_many`` on the event loop when it needs no DB read and no wait (the usual submit): None otherwise."""
    if not all(known_visible(file_id, caller) for caller, file_id, _, _ in requests):
        return None
    return ledger.create_tasks_now(requests)  # type: ignore[return-value]


def warm_submit_path() -> None:
    """On the event loop, at start-up: the no-wait writer connection and this thread's task message template."""
    from .db import WouldWait, write_tx_nowait
    from .wire import encode

    encode("warm-up", 5)
    try:
        with write_tx_nowait():
            pass
    except WouldWait:  # a worker is writing: the first submit opens it instead
        pass


def create_many(requests: Sequence[tuple[str, int, int, str | None]]) -> list[Created | Exception]:
    """The submits' group-commit write (main.py): each one's file check, then the task rows of those the caller
    may see in one transaction. (None, None) for a file the caller may not see."""
    out: list[Created | Exception] = [(None, None)] * len(requests)
    seen = []
    for i, (caller, file_id, _, _) in enumerate(requests):
        try:
            if visible(file_id, caller):
                seen.append(i)
        except Exception as exc:  # noqa: BLE001 - this submit's own error
            out[i] = exc
    if seen:
        try:
            for i, created in zip(seen, ledger.create_tasks([requests[i] for i in seen]), strict=True):
                out[i] = created
        except Exception as exc:  # noqa: BLE001 - the transaction failed: every submit in it hears of it
            for i in seen:
                out[i] = exc
    return out


@router.post("/api/data-sync/sync-single-file", status_code=202, response_model=Submitted, responses={
    **API_BODY,
    404: _err("no such file, or another caller's upload (indistinguishable)"),
    409: _err("the Idempotency-Key was already used by this caller for a different request (file_id or priority);"
              " the task it names is left untouched"),
    413: _err(f"the request body is larger than {JSON_BODY_LIMIT} bytes"),
    422: _err("a malformed body or header, or a blank Idempotency-Key", InvalidRequest),
    503: _err("an unexpected error, or (FALLBACK=off) the task could not be published: `task not accepted: …`")})
async def submit(request: Request, body: SyncRequest, caller: Caller,
                 idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> Any:
    if idempotency_key is not None and not idempotency_key.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="Idempotency-Key must not be blank")
    task, outcome = await request.app.state.submits.submit((caller, body.file_id, body.priority, idempotency_key))
    if task is None:
        raise _not_found("file")
    if outcome == ledger.KEY_CONFLICT:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=(
            f"Idempotency-Key already used for a different request (file_id={task['file_id']}, "
            f"priority={task['priority']}); a key may only be reused to retry the same request"))
    if outcome == ledger.REPLAYED:  # idempotent replay: same task, current state
        return {"celery_task_id": task["task_id"], "status": task["status"], "mode": task["mode"]}
    st = request.app.state
    mode = ledger.CELERY
    failed = await st.publisher.try_publish(task["task_id"], body.priority)
    if failed is not None and not get_settings().fallback:  # FALLBACK=off (canary knob): no asyncio fallback
        if await asyncio.to_thread(ledger.discard_unpublished, task["task_id"]):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                detail=f"task not accepted: {failed}; the in-process fallback is off (FALLBACK=off)")
    elif failed is not None:
        if await asyncio.to_thread(ledger.mark_fallback, task["task_id"]):
            st.runner.schedule(task["task_id"])
            mode = ledger.FALLBACK
    return _accepted(task["task_id"], mode)


def _accepted(task_id: str, mode: str) -> Response:
    """The 202 of an accepted submit, as ``Submitted``: rendered here, since FastAPI's validation and
    serialization of a response model took a tenth of the submit's time on the event loop."""
    body = b'{"celery_task_id":%s,"status":"PENDING","mode":"%s"}' % (json.dumps(task_id).encode(), mode.encode())
    return Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


@router.get("/api/data-sync/task-status/{task_id}", response_model=TaskView, responses={
    **API, 404: _err("no such task, or another caller's (indistinguishable)")})
async def task_status(caller: Caller, task_id: str) -> Any:
    t = await asyncio.to_thread(ledger.get_task, task_id, caller) if len(task_id) <= 64 else None
    if t is None:
        if get_settings().unknown_status == "pending":  # UNKNOWN_STATUS=pending (canary): as AsyncResult does
            return JSONResponse({"celery_task_id": task_id, "status": ledger.PENDING, "file_id": None,
                                 "priority": None, "mode": None, "attempts": 0, "result": None, "error": None,
                                 "created_at": None, "updated_at": None})  # not the declared TaskView: unsafe
        raise _not_found()
    return _task_view(t)


@router.delete("/api/data-sync/cancel-task/{task_id}", response_model=Cancelled, responses={
    **API, 404: _err("no such task, or another caller's (indistinguishable)"),
    409: _err("the task already finished (SUCCESS or FAILURE): `task already finished with status …`")})
async def cancel_task(request: Request, caller: Caller, task_id: str) -> dict:
    if len(task_id) > 64:
        raise _not_found()
    verdict, t = await asyncio.to_thread(ledger.cancel, task_id, caller)
    if verdict == "missing":
        raise _not_found()
    if verdict == "conflict":
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"task already finished with status {t['status']}; cannot cancel")
    if verdict == "revoked" and (t["mode"] == ledger.CELERY or not get_settings().durable_revoke):
        request.app.state.publisher.revoke_best_effort(task_id)
    return {"celery_task_id": task_id, "status": ledger.REVOKED}


@router.get("/api/data-sync/tasks", response_model=TaskPage, responses=API)
async def list_tasks(caller: Caller,
                     status_: Annotated[Literal[ledger.ALL_STATES] | None, Query(alias="status")] = None,  # type: ignore[valid-type]
                     limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict:
    rows, total = await asyncio.to_thread(ledger.list_tasks, caller, status_, limit, offset)
    return {"tasks": [_task_view(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/internal/ledger", dependencies=[Depends(require_admin)], response_model=None, responses={
    200: {"model": Ledger, "description": "the ground-truth ledger (see service/README.md)"},
    401: UNAUTHORIZED | {"description": "missing or wrong ADMIN_TOKEN"},
    404: _err("the probe is disabled (ADMIN_TOKEN unset or empty)"), 503: UNAVAILABLE})
async def internal_ledger(since: Annotated[float | None, Query()] = None) -> JSONResponse:
    now = time.time()
    tasks = await asyncio.to_thread(ledger.ledger_snapshot, since)
    return JSONResponse({"service": "data-sync", "generated_at": now, "tasks": tasks})
