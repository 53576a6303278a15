"""The message SageMaker's async endpoint publishes to its success or error topic when an
invocation ends; the Lambda batch worker and the local runner publish the same one, so the
notifications handler (`twolane.jobs.notifications`) cannot tell the hosts apart. Its shape is
in that module's docstring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso_now() -> str:
    """Now, as SageMaker writes times: 2026-01-25T22:46:00.608Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sagemaker_notification(req: dict[str, Any], ok: bool, received: str,
                           reason: str | None = None, region: str = "eu-west-2") -> dict[str, Any]:
    """The message SageMaker publishes to the success or error topic for one invocation.
    `req` holds the invocation's EndpointName, InputLocation, ContentType, InferenceId,
    OutputLocation and FailureLocation; `received` when it was taken (ISO time)."""
    msg: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": iso_now(),
        "receivedTime": received,
        "invocationStatus": "Completed" if ok else "Failed",
        "requestParameters": {"contentType": req.get("ContentType", "application/json"),
                              "endpointName": req.get("EndpointName"),
                              "inputLocation": req.get("InputLocation")},
        "responseParameters": ({"contentType": "application/json",
                                "outputLocation": req.get("OutputLocation")} if ok else
                               {"contentType": "application/json",
                                "failureLocation": req.get("FailureLocation")}),
        "inferenceId": req.get("InferenceId"),
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if not ok:
        msg["failureReason"] = reason or "inference failed"
    return msg
