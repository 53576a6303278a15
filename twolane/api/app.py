"""The FastAPI app factory. `create_app()` is what uvicorn, Mangum and the tests all serve.

The model is loaded once per process: passed in (Lambda loads it at import), or loaded at
startup / on first use from the settings.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from twolane.api import errors
from twolane.api.deps import JobsHolder, PredictorHolder, loader_for
from twolane.api.errors import ModelUnavailable
from twolane.api.gate import Gate
from twolane.api.routers import drift as drift_routes
from twolane.api.routers import health, models, page, predict, pxtextmining, slow_api
from twolane.api.routers import jobs as jobs_routes
from twolane.jobs.service import JobService
from twolane.predictors import Predictor
from twolane.settings import Settings, get_settings

log = logging.getLogger("twolane.api")

DESCRIPTION = """The instant lane of twolane: TF-IDF models as ONNX label patient-experience comments
with 32 themes and a 5-class sentiment in milliseconds.

* `POST /v1/predict`: labels, sentiment and (on request) per-label probabilities.
* `POST /predict_multilabel`, `GET /`: the pxtextmining quick API, same shapes.
* `POST /api/StartContainerInstance`, `GET /api/GetResults/{id}`: the pxtextmining slow API
  (the key may come as `?code=` there).
* When the service has API keys, send one in the `x-api-key` header (every route but
  `/health` and the page at `/`, these docs included).
* Open `/` in a browser for a page that labels a CSV, Excel or JSON file and charts the results.
* Errors: `{"detail", "request_id", "comment_ids"?}`; `detail` is a reason, or for a body that
  does not validate a list of `{loc, msg, type}` naming each item and field. No error echoes
  the comment text.
"""


def create_app(predictor: Predictor | None = None, settings: Settings | None = None,
               jobs: JobService | None = None) -> FastAPI:
    """An app serving `predictor`, or the instant bundle named by the settings (loaded once).

    `jobs`: the batch lane's jobs service (the local stack passes one with its local invoker);
    by default it is made on first use from the settings (S3 + SageMaker on AWS).
    """
    settings = settings or get_settings()
    holder = PredictorHolder(predictor, loader=None if predictor is not None else loader_for(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            holder.get()  # load at startup, not on the first request
        except ModelUnavailable:
            log.warning("starting without a model; /health answers 503 until it loads")
        yield

    api = settings.api
    # /docs and /redoc are the page's (self-hosted Swagger UI, routers/page.install_docs)
    app = FastAPI(title="twolane instant lane", description=DESCRIPTION, version="1",
                  lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if api.docs else None)
    app.state.settings = settings
    app.state.predictor = holder
    app.state.jobs = JobsHolder(settings, jobs)
    errors.install(app)
    for r in (health.router, predict.router, pxtextmining.router, models.router,
              jobs_routes.router, slow_api.router, drift_routes.router):
        app.include_router(r)
    page.install(app, docs=api.docs)  # GET /: the web page (JSON for API clients), /page/, /docs
    # Outermost: the key is checked, and a POST waits for a slot, before any body is read.
    app.add_middleware(Gate, keys=api.api_keys, max_concurrent=api.max_concurrent_requests,
                       body_seconds=api.request_read_seconds)
    return app
