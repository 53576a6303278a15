"""The web page for analysts: GET / (HTML for browsers, the pxtextmining JSON for API clients),
its static files under /page/, and the limits the page needs (GET /page/limits.json).

The page is static: it reads the user's file in the browser and calls /v1/predict or /v1/jobs
itself, so comment text never reaches this router. Every URL in the page is relative, so it
works at / locally and under a path prefix behind API Gateway.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from twolane.api.deps import SettingsDep
from twolane.api.gate import StrictRoute
from twolane.api.routers.pxtextmining import HELLO

PAGE_DIR = Path(__file__).resolve().parent.parent / "page"
# The page loads only its own files and calls only its own API: comment text cannot leave
# for another host. Workers from blob: URLs are how the .xlsx libraries unzip off the main thread.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False, route_class=StrictRoute)


def _quality(accept: str, media_type: str) -> float:
    """The q-value `accept` (an HTTP Accept header) gives `media_type`, by its most specific
    matching range (RFC 9110 12.5.1); 0.0 when nothing matches."""
    main = media_type.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)  # (specificity, q)
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        rng = fields[0].lower()
        if rng == media_type:
            specificity = 2
        elif rng == f"{main}/*":
            specificity = 1
        elif rng == "*/*":
            specificity = 0
        else:
            continue
        q = 1.0
        for f in fields[1:]:
            name, _, value = f.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]


def prefers_html(accept: str | None) -> bool:
    """True when the Accept header ranks text/html above application/json (a browser's does;
    curl's and most API clients' `*/*` does not: a tie answers JSON)."""
    if not accept:
        return False
    html = _quality(accept, "text/html")
    return html > 0 and html > _quality(accept, "application/json")


@router.get("/")
async def root(request: Request) -> Response:
    """The web page for a browser; `{"test": "Hello"}` for API clients (pxtextmining's root)."""
    if prefers_html(request.headers.get("accept")):
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html",
                            headers={"Vary": "Accept", "Cache-Control": "no-cache",
                                     "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                     "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "no-referrer"})
    return JSONResponse(HELLO, headers={"Vary": "Accept"})


# HEAD for uptime checks: the same answer without a body (not a second operation in the schema)
router.add_api_route("/", root, methods=["HEAD"], include_in_schema=False)


@router.get("/page/limits.json")
async def limits(settings: SettingsDep) -> JSONResponse:
    """What the page must respect: comments per /v1/predict request and per job, characters per
    comment. Not secret; open like the page itself."""
    api = settings.api
    return JSONResponse({"max_items": api.max_items, "max_job_items": api.max_job_items,
                         "max_text_chars": api.max_text_chars})


def install(app: FastAPI, docs: bool = True) -> None:
    """Register the page: the routes above, then the static files under /page/; with `docs`,
    the interactive API docs at /docs (and /redoc, which sends a browser there)."""
    app.include_router(router)
    app.mount("/page", StaticFiles(directory=PAGE_DIR), name="page")
    if docs:
        install_docs(app)


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the vendored files (page/vendor/), never from a CDN: FastAPI's
    default loads it from cdn.jsdelivr.net, a blank page offline or behind a strict proxy.
    /redoc (FastAPI's other docs page, also CDN-hosted) redirects to /docs."""
    openapi_url = app.openapi_url or "/openapi.json"
    docs_router = APIRouter(route_class=StrictRoute, include_in_schema=False)

    @docs_router.get("/docs")
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API docs",
                                   swagger_js_url="/page/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/page/vendor/swagger-ui.css",
                                   swagger_favicon_url="data:,")

    @docs_router.get("/redoc")
    async def redoc() -> Response:
        return RedirectResponse("/docs")

    app.include_router(docs_router)
