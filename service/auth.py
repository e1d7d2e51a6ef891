"""Bearer-token auth: API_TOKENS maps tokens to callers; tasks are caller-scoped."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import get_settings

_bearer = HTTPBearer(auto_error=False)


def _unauthorized(msg: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=msg, headers={"WWW-Authenticate": "Bearer"})


def _match(given: str, candidates: dict[str, str]) -> str | None:
    found = None
    for token, caller in candidates.items():  # constant-time over every token
        if hmac.compare_digest(given.encode(), token.encode()):
            found = caller
    return found


Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_caller(creds: Creds) -> str:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise _unauthorized("missing bearer token")
    caller = _match(creds.credentials, get_settings().tokens)
    if caller is None:
        raise _unauthorized("invalid bearer token")
    return caller


def require_admin(creds: Creds) -> None:
    admin = get_settings().admin_token
    if admin is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), admin.encode()):
        raise _unauthorized("invalid admin token")
