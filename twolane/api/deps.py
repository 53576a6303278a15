"""FastAPI dependencies: the settings, the predictor (loaded once per process) and API-key auth."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from twolane.api.errors import ModelUnavailable, RequestRejected
from twolane.api.gate import RESULTS_PREFIX, TOKEN_PREFIX, key_matches, key_of
from twolane.jobs.service import JobService
from twolane.predictors import Predictor
from twolane.settings import Settings, get_settings
from twolane.wiring import batch_taxonomy, get_predictor, instant_predictor, job_service

log = logging.getLogger("twolane.api")


class PredictorHolder:
    """Holds the process's one predictor; loads it on first use (or at startup) exactly once."""

    def __init__(self, predictor: Predictor | None = None,
                 loader: Callable[[], Predictor] | None = None):
        self._predictor = predictor
        self._loader = loader
        self._lock = threading.Lock()
        self.error: str | None = None

    @property
    def loaded(self) -> Predictor | None:
        return self._predictor

    def get(self) -> Predictor:
        if self._predictor is not None:
            return self._predictor
        with self._lock:
            if self._predictor is None:
                if self._loader is None:
                    raise ModelUnavailable("no predictor configured")
                try:
                    self._predictor = self._loader()
                    self.error = None
                    log.info("model %s loaded", getattr(self._predictor, "version", "?"))
                except Exception as exc:  # a missing/broken bundle: say so (in the log), 503
                    self.error = f"{type(exc).__name__}: {exc}"  # for the log only: may hold a path
                    log.error("could not load the instant model: %s", self.error)
                    raise ModelUnavailable(self.error) from exc
        return self._predictor


class JobsHolder:
    """Holds the app's jobs service: given (the local stack, tests), or made on first use from
    the settings on AWS (`twolane.wiring.job_service`: S3 job store + the batch host's invoker)."""

    def __init__(self, settings: Settings, service: JobService | None = None):
        self._settings = settings
        self._service = service
        self._lock = threading.Lock()

    def get(self) -> JobService:
        if self._service is not None:
            return self._service
        with self._lock:
            if self._service is None:
                service = job_service(self._settings)
                if service is None:
                    raise RequestRejected(503, "the batch lane is not configured on this service")
                self._service = service
        return self._service


def loader_for(settings: Settings) -> Callable[[], Predictor]:
    """Loads the instant bundle the settings name: the process-wide cached predictor for the
    process's own settings, a predictor of its own for any other settings."""

    def load() -> Predictor:
        if settings is get_settings():
            return get_predictor()
        return instant_predictor(settings)

    return load


# Requests with at most this many comments are labelled on the event loop (about 0.2 ms each:
# cheaper than a thread hop); larger ones go to the thread pool so the loop stays responsive.
INLINE_ITEMS = 32


async def run_model(n_items: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if n_items <= INLINE_ITEMS:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_model(request: Request) -> PredictorHolder:
    """The app's predictor holder. Routes call `.get()` after validating the request, so a
    client's mistake is reported as such (422) even while the model is unavailable (503)."""
    return request.app.state.predictor


def get_jobs(request: Request) -> JobsHolder:
    """The app's jobs service holder (`.get()` answers 503 where no batch lane is configured)."""
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ModelDep = Annotated[PredictorHolder, Depends(get_model)]
JobsDep = Annotated[JobsHolder, Depends(get_jobs)]


API_KEY = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="ApiKey",
                       description="An API key, when the service has keys set (all routes but /health).")


def owner_of(request: Request, key: str | None) -> str | None:
    """Who is calling, as a tag that names no secret: a hash of the API key (keys set in the
    settings), the client name API Gateway's authorizer gave (AWS), or None (no auth)."""
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
    event = request.scope.get("aws.event") or {}
    client = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda", {}) or {}
    name = client.get("client") if isinstance(client, dict) else None
    return f"client:{name}" if name else None


async def require_api_key(
    request: Request, settings: SettingsDep,
    x_api_key: Annotated[str | None, Security(API_KEY)] = None,
) -> str | None:
    """401 unless `x-api-key` holds one of the API keys (no keys set = open); returns the
    caller's owner tag (`owner_of`). The app's Gate has checked the key before the body was
    read; this declares the scheme in the OpenAPI document and names the caller."""
    keys = settings.api.api_keys
    if not keys:
        return owner_of(request, None)
    if not x_api_key:
        raise HTTPException(status_code=401, detail="missing x-api-key header")
    if not key_matches(x_api_key, keys):
        raise HTTPException(status_code=401, detail="invalid API key")
    return owner_of(request, x_api_key)


OwnerDep = Annotated[str | None, Depends(require_api_key)]


async def require_api_key_or_code(
    request: Request, settings: SettingsDep,
    x_api_key: Annotated[str | None, Security(API_KEY)] = None,
    code: Annotated[str | None, Query(description="API key as pxtextmining's slow API takes it "
                                                  "(Azure Functions' `code`).")] = None,
) -> str | None:
    """`require_api_key`, also taking the key from the `code` query parameter, where
    pxtextmining's slow-API clients pass it; on GET /api/GetResults/<id>, `code` may instead
    be that job's results token (`gate.results_token`), which stands for the key it was made
    with (so the caller is the job's owner)."""
    given = x_api_key or code
    keys = settings.api.api_keys
    if given and given.startswith(TOKEN_PREFIX) and not request.url.path.startswith(RESULTS_PREFIX):
        raise HTTPException(status_code=401, detail="a results token opens only its job's results")
    if given and keys and not x_api_key:
        given = key_of(given, request.url.path, keys) or given
    elif given and not keys and given.startswith(TOKEN_PREFIX):
        return owner_of(request, None)  # no keys here (open, or AWS's authorizer checked it)
    return await require_api_key(request, settings, given)


CodeOwnerDep = Annotated[str | None, Depends(require_api_key_or_code)]


BATCH_DISABLED = "the batch lane is not enabled in this deployment: use the instant lane (/v1/predict)"
SUMMARIES_DISABLED = "summaries are not enabled in this deployment (no text-generation model)"


async def require_batch_enabled(settings: SettingsDep) -> None:
    """503 when this deployment has no batch lane (TWOLANE_BATCH_ENABLED=0); checked before
    the body is read."""
    if not settings.api.batch_enabled:
        raise RequestRejected(503, BATCH_DISABLED)


async def require_summaries_enabled(settings: SettingsDep) -> None:
    """501 when this deployment has no text-generation lane (TWOLANE_SUMMARIES_ENABLED=0)."""
    if not settings.api.summaries_enabled:
        raise RequestRejected(501, SUMMARIES_DISABLED)


PX_NHS_ONLY = ("the pxtextmining routes serve NHS bundles only; this bundle has its own taxonomy: "
               "use POST /v1/predict")


def require_nhs_bundle(predictor: Predictor) -> None:
    """409 unless the model is of the NHS taxonomy: pxtextmining's shapes name it."""
    manifest = getattr(predictor, "manifest", None)
    if manifest is not None and not manifest.is_nhs:
        raise RequestRejected(409, PX_NHS_ONLY)


def require_batch_lane_for(predictor: Predictor | None, settings: Settings) -> None:
    """409 when the batch lane cannot answer for this model's taxonomy
    (`Manifest.batch_lane_refuses` against `wiring.batch_taxonomy`); None (no instant model
    here): nothing to check."""
    manifest = getattr(predictor, "manifest", None)
    reason = manifest.batch_lane_refuses(batch_taxonomy(settings)) if manifest is not None else None
    if reason:
        raise RequestRejected(409, reason)
