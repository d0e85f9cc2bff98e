"""FastAPI dependencies: the running Service and bearer-token auth. Never holds state of its own."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from agent.errors import Unauthorized

if TYPE_CHECKING:
    from agent.service import Service


def get_service(request: Request) -> Service:
    """The Service the app was created for (set by `create_app`)."""
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated["Service", Depends(get_service)]


def require_token(request: Request) -> None:
    """When SCISSOR_API_TOKEN is set, require `Authorization: Bearer <token>` (constant-time comparison)."""
    token = get_service(request).settings.api_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise Unauthorized("wrong bearer token")


AuthDep = Depends(require_token)
