"""GET /health: is the model loaded, and which version. Open even when API keys are set."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from twolane.api.deps import ModelDep
from twolane.api.errors import ModelUnavailable

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(model: ModelDep) -> JSONResponse:
    try:
        predictor = model.get()
    except ModelUnavailable as exc:
        return JSONResponse({"status": "unavailable", "model_loaded": False, "reason": str(exc)},
                            status_code=503)
    return JSONResponse({"status": "ok", "model_loaded": True, "model_version": predictor.version})
