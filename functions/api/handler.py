"""Lambda entry point of the instant-lane API (API Gateway HTTP API -> Mangum -> FastAPI).

The bundle is loaded here, at import (the cold start), never per call.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from mangum import Mangum

from twolane.api.app import create_app
from twolane.wiring import get_predictor

logger = Logger(service="twolane-api")

PREDICTOR = get_predictor()
logger.info("model loaded", extra={"model_version": PREDICTOR.version})
_mangum = Mangum(create_app(PREDICTOR), lifespan="off")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _mangum(event, context)
