"""GET /health: is the model loaded, and which version. Open even when API keys are set."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from twolane.api.deps import ModelDep
from twolane.api.errors import ModelUnavailable
from twolane.api.gate import StrictRoute

router = APIRouter(tags=["health"], route_class=StrictRoute)


@router.get("/health")
async def health(model: ModelDep) -> JSONResponse:
    try:
        predictor = model.get()
    except ModelUnavailable:  # the reason (it may name a path) is in the log, not here
        return JSONResponse({"status": "unavailable", "model_loaded": False,
                             "reason": "no model is loaded"}, status_code=503)
    return JSONResponse({"status": "ok", "model_loaded": True, "model_version": predictor.version})


# HEAD for uptime checks: the same answer without a body (not a second operation in the schema)
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
