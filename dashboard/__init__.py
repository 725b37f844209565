"""Trainport's web dashboard and the offline API reference, served by the API itself.

The dashboard is plain ES modules in `static/` (no build step): a client of the public `/v1` API
like any other, signed in with an API key kept in the tab's `sessionStorage`. `mount()` serves it
at `/ui/` under a strict Content-Security-Policy, redirects `/` there, and serves `/docs` (Swagger
UI) and `/redoc` from assets vendored in `static/vendor/` (see `scripts/vendor.mjs`), so nothing
is fetched from a CDN and both work on an air-gapped cluster. It imports nothing of Trainport's.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_URL = "/ui/vendor"
# No inline script or style, nothing from another origin; API calls go to this same origin.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class DashboardFiles(StaticFiles):
    """The dashboard's files with its security headers; the page itself is never cached, so a
    new server version is picked up on reload, while the ETags StaticFiles sends keep that cheap."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def _swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Trainport API",
        swagger_js_url=f"{VENDOR_URL}/swagger-ui-dist/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR_URL}/swagger-ui-dist/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR_URL}/swagger-ui-dist/favicon-32x32.png",
    )


def _redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Trainport API",
        redoc_js_url=f"{VENDOR_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR_URL}/swagger-ui-dist/favicon-32x32.png",
        with_google_fonts=False,
    )


def _to_dashboard() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the dashboard at /ui/, `/` → /ui/, and /docs and /redoc without a CDN.

    The app must be created with `docs_url=None, redoc_url=None` so these replace FastAPI's.
    """
    app.add_api_route("/", _to_dashboard, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", _swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", _redoc, methods=["GET"], include_in_schema=False)
    app.mount("/ui", DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
