"""What the invoker sends the Lambda batch worker for one shard (`WorkerEvent`, JSON): the
batch host's input contract. Light on purpose (pydantic and the bucket layout only), so the
invoker on the API's side imports it without the batch model's runtime."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twolane.layout import (
    BATCH_FAILURES,
    BATCH_INPUT,
    BATCH_OUTPUT,
    batch_failure_key,
    batch_output_key,
    parse_s3_uri,
    s3_uri,
)

CONTENT_TYPE = "application/json"


def _under(prefix: str) -> Callable[[str], str]:
    def check(uri: str) -> str:
        _bucket, key = parse_s3_uri(uri)  # ValueError -> a validation error
        if not key.startswith(prefix):
            raise ValueError(f"must be an s3:// URI under {prefix}")
        return uri

    return check


class WorkerEvent(BaseModel):
    """What the invoker sends the worker (JSON), one per shard: where the input is, where the
    output or failure goes (SageMaker's locations for that inference id) and the endpoint name
    the job record carries (reported back in the notification)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    inference_id: str = Field(pattern=r"^[0-9a-f]{32}(-[0-9]{1,6})?$")
    input_location: str
    output_location: str
    failure_location: str
    endpoint: str = Field(min_length=1, max_length=256)

    _input = field_validator("input_location")(_under(BATCH_INPUT))
    _output = field_validator("output_location")(_under(BATCH_OUTPUT))
    _failure = field_validator("failure_location")(_under(BATCH_FAILURES))

    @classmethod
    def for_invocation(cls, bucket: str, *, input_location: str, inference_id: str,
                       endpoint: str) -> WorkerEvent:
        """The event for one inference: output and failure where SageMaker would put them."""
        return cls(inference_id=inference_id, input_location=input_location,
                   output_location=s3_uri(bucket, batch_output_key(inference_id)),
                   failure_location=s3_uri(bucket, batch_failure_key(inference_id)),
                   endpoint=endpoint)

    def sagemaker_request(self) -> dict[str, str]:
        """The same invocation in SageMaker's field names (for its notification)."""
        return {"EndpointName": self.endpoint, "InputLocation": self.input_location,
                "ContentType": CONTENT_TYPE, "InferenceId": self.inference_id,
                "OutputLocation": self.output_location, "FailureLocation": self.failure_location}
