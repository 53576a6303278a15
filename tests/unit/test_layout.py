"""The bucket layout (twolane.layout): keys and the one "object not found" check."""

from __future__ import annotations

from botocore.exceptions import ClientError

from twolane import layout


def _error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_keys_live_under_their_prefixes() -> None:
    assert layout.job_record_key("abc") == "jobs/abc.json"
    assert layout.batch_input_key("abc").startswith(layout.BATCH_INPUT)
    assert layout.batch_output_key("abc").startswith(layout.BATCH_OUTPUT)
    assert layout.batch_failure_key("abc") == "batch/failures/abc-error.out"
    assert layout.batch_model_key("v1") == "models/batch/v1/model.tar.gz"
    assert layout.s3_uri("b", "k") == "s3://b/k"


def test_is_not_found() -> None:
    assert layout.is_not_found(_error("NoSuchKey", 404))
    assert layout.is_not_found(_error("404", 404))  # HeadObject's bare 404
    assert not layout.is_not_found(_error("AccessDenied", 403))
    assert not layout.is_not_found(ValueError("x"))
