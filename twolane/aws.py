"""boto3 clients whose endpoint is configurable: moto on 127.0.0.1 locally, AWS in the cloud."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from twolane.settings import get_settings


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client for `service`, pointed at TWOLANE_AWS_ENDPOINT_URL when set."""
    s = get_settings()
    kwargs.setdefault("region_name", s.aws_region)
    if s.aws_endpoint_url:
        kwargs.setdefault("endpoint_url", s.aws_endpoint_url)
    kwargs.setdefault("config", Config(retries={"max_attempts": 3, "mode": "standard"}))
    return boto3.client(service, **kwargs)
