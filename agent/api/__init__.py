"""HTTP API: create_app(service) builds the FastAPI app.

Errors become JSON {error, detail}, never stack traces. The Host header is checked and the security headers
are set outside everything else (`guard.py`); no path redirects (a trailing slash is a 404, not a 307 naming
the Host back before auth).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.api import alerts, cameras, console, questions, rules, system
from agent.api.deps import AuthDep
from agent.api.guard import HostAndHeaders, trusted_hosts
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.service import Service

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413 before the app reads them (declared or streamed length)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        seen, exceeded = 0, False

        async def limited() -> Any:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                exceeded = True
                raise _BodyTooLarge
            return message

        async def guarded(message: Any) -> None:
            # FastAPI turns an error while reading the body into its own 400; the 413 below replaces it.
            if not exceeded:
                await send(message)

        with suppress(_BodyTooLarge):
            await self.app(scope, limited, guarded)
        if exceeded:
            await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse(
        {"error": "PayloadTooLarge", "detail": f"request body over {max_bytes} bytes"}, status_code=413
    )


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        errors.append({"field": loc, "message": str(err.get("msg", ""))})
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    return f"{first['field'] or 'request'}: {first['message']}", errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return JSONResponse({"error": "ValidationError", "detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": "HTTPError", "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:  # crash guard: log it, never leak a trace
        log.exception("unhandled error in a request")
        return JSONResponse(
            {"error": "InternalError", "detail": "internal error; see the server log"}, status_code=500
        )


def _install_docs(app: FastAPI) -> None:
    @app.get("/openapi.json", include_in_schema=False, dependencies=[AuthDep])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())


class _GuardedApp(FastAPI):
    """FastAPI with `HostAndHeaders` outside Starlette's own error middleware, so a refused Host never
    reaches routing and even a 500 page carries the security headers."""

    trusted: frozenset[str] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return HostAndHeaders(super().build_middleware_stack(), self.trusted)


def create_app(service: Service, *, manage_service: bool = True) -> FastAPI:
    """The FastAPI app for `service`; with `manage_service`, the app's lifespan starts and stops it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
        try:
            yield
        finally:
            if manage_service:
                await service.stop()

    app = _GuardedApp(
        title="Scissor Stream",
        version="0.1.0",
        description="Video memory for camera streams: ask questions about recent footage, get alerts.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,  # served below, behind the token like every route
        redirect_slashes=False,
    )
    app.trusted = trusted_hosts(service.settings)
    _install_docs(app)
    app.state.service = service
    _install_error_handlers(app)
    for module in (system, cameras, questions, rules, alerts, console):  # console: the page at /, /docs
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=service.settings.api.max_body_bytes)
    return app
