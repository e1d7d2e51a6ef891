"""Bearer-token auth: API_TOKENS maps tokens to callers; tasks and uploads are caller-scoped.

The caller is decided before FastAPI reads the body: ``AuthBeforeBody`` (an ASGI middleware) refuses every
``/api/`` request without a valid token with 401 straight from its headers, so a caller without a token can
make the service read, spool or parse nothing (FastAPI itself reads and parses the body before it runs any
dependency). The same middleware refuses a declared ``Content-Length`` above the route's limit with 413, still
without reading the body. ``require_caller`` makes the same decision again for the route (and declares the
bearer scheme in the OpenAPI).
"""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import get_settings

_bearer = HTTPBearer(auto_error=False)

API_PREFIX = "/api/"
UPLOAD_PATH = "/api/files"
MULTIPART_SLACK = 64 * 1024  # multipart framing around the file, on top of MAX_UPLOAD_BYTES
JSON_BODY_LIMIT = 64 * 1024  # every other /api body is a small JSON object


def _unauthorized(msg: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=msg, headers={"WWW-Authenticate": "Bearer"})


def _match(given: str, candidates: dict[str, str]) -> str | None:
    found = None
    for token, caller in candidates.items():  # constant-time over every token
        if hmac.compare_digest(given.encode(), token.encode()):
            found = caller
    return found


def caller_for(authorization: str | None) -> str:
    """The caller an ``Authorization`` header value names; HTTPException 401 if none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing bearer token")
    caller = _match(token, get_settings().tokens)
    if caller is None:
        raise _unauthorized("invalid bearer token")
    return caller


Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CALLER_KEY = "data_sync.caller"  # where AuthBeforeBody leaves the caller it decided, in the ASGI scope


class BearerCaller(HTTPBearer):
    """The route's caller, as one dependency that is also the bearer scheme of the OpenAPI (named as FastAPI's
    own ``HTTPBearer``). AuthBeforeBody has decided it already, from the request head; a bearer dependency and a
    caller dependency on top of it were a fifth of a submit's time on the event loop."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        caller = request.scope.get(CALLER_KEY)
        return caller if caller is not None else caller_for(request.headers.get("authorization"))


require_caller = BearerCaller()


async def require_admin(creds: Creds) -> None:
    admin = get_settings().admin_token
    if admin is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), admin.encode()):
        raise _unauthorized("invalid admin token")


def body_limit(path: str) -> int:
    return get_settings().max_upload_bytes + MULTIPART_SLACK if path == UPLOAD_PATH else JSON_BODY_LIMIT


class AuthBeforeBody:
    """ASGI middleware: 401 for an ``/api/`` request without a valid token, then 413 for a declared
    ``Content-Length`` above the limit, both from the request head alone (the body is never read)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            headers = {k.lower(): v for k, v in scope["headers"]}
            refusal = self._refusal(scope, headers)
            if refusal is not None:  # answered without ever calling receive(): the body stays unread
                code, detail, extra = refusal
                await JSONResponse({"detail": detail}, status_code=code, headers=extra)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope, headers: dict[bytes, bytes]) -> tuple[int, str, dict[str, str]] | None:
        try:
            scope[CALLER_KEY] = caller_for(headers.get(b"authorization", b"").decode("latin-1"))
        except HTTPException as exc:
            return exc.status_code, str(exc.detail), dict(exc.headers or {})
        if scope["method"] in ("POST", "PUT", "PATCH"):
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                return None  # the server has refused such a request already
            limit = body_limit(scope["path"])
            if length > limit:
                return 413, f"request body of {length} bytes is larger than this route's limit of {limit} bytes", {}
        return None
