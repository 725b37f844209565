"""Trainport's web dashboard and the offline API reference, served by the API itself.

The dashboard is plain ES modules in `static/` (no build step): a client of the public `/v1` API
like any other, signed in with an API key kept in the tab's `sessionStorage`. `mount()` serves it
at `/ui/` under a strict Content-Security-Policy, redirects `/` there, and serves `/docs` (Swagger
UI) and `/redoc` from assets vendored in `static/vendor/` (see `scripts/vendor.mjs`) under a CSP
that allows no other origin, so nothing is fetched from a CDN and both work air-gapped. It
imports nothing of Trainport's.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
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
# Swagger UI and ReDoc set inline styles and ReDoc injects <style> elements and runs its search
# in a blob: worker, so those are allowed on /docs and /redoc; scripts are still only ours.
REFERENCE_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
).replace("object-src", "worker-src 'self' blob:; object-src")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
REFERENCE_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": REFERENCE_POLICY}


class DashboardFiles(StaticFiles):
    """The dashboard's files with its security headers; the page itself is never cached, so a
    new server version is picked up on reload, while the ETags StaticFiles sends keep that cheap."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def _reference_page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / "reference" / name, headers=REFERENCE_HEADERS)


async def _swagger_ui() -> FileResponse:
    return _reference_page("swagger.html")


async def _redoc() -> FileResponse:
    return _reference_page("redoc.html")


async def _to_dashboard() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the dashboard at /ui/, `/` → /ui/, and /docs and /redoc without a CDN.

    The app must be created with `docs_url=None, redoc_url=None` so these replace FastAPI's.
    """
    app.add_api_route("/", _to_dashboard, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", _swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", _redoc, methods=["GET"], include_in_schema=False)
    app.mount("/ui", DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
