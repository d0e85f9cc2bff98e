"""The web console: `/` (the page), `/console/...` (its files from agent/web) and `/docs` (Swagger UI).

Everything the page and the docs load comes from the service itself: no CDN, no fonts, no analytics; the
Content-Security-Policy headers hold browsers to that. The page and its files are static and public (they hold
no data: every API call they make sends the bearer token); `/docs` stays behind the token like the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from agent.api.deps import AuthDep

WEB = Path(__file__).resolve().parent.parent / "web"
ASSETS = "/console"
SWAGGER = f"{ASSETS}/vendor/swagger-ui"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
COMMON_HEADERS = {
    "Cache-Control": "no-cache",  # revalidated (ETag) on every load: an upgrade shows at once
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI's page is FastAPI's, with an inline start-up script; its styles use inline SVG images.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["console"], include_in_schema=False)


def _file(path: Path) -> FileResponse:
    headers = dict(COMMON_HEADERS)
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = PAGE_POLICY
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def console_page() -> FileResponse:
    """The console: cameras, timeline, alerts, questions, rules, memory."""
    return _file(WEB / "index.html")


@router.api_route(ASSETS + "/{name:path}", methods=["GET", "HEAD"])
async def console_asset(name: str) -> FileResponse:
    """One file of the console (scripts, styles, icons, vendored Swagger UI); 404 outside agent/web."""
    path = (WEB / name).resolve()
    if not path.is_relative_to(WEB) or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise HTTPException(404, "Not Found")
    return _file(path)


@router.get("/docs", dependencies=[AuthDep])
async def swagger_ui() -> HTMLResponse:
    """Swagger UI over /openapi.json, its script and styles served from agent/web/vendor."""
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Scissor Stream - API docs",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.svg",
    )
    page.headers.update({**COMMON_HEADERS, "Content-Security-Policy": DOCS_POLICY})
    return page
