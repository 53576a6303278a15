"""boto3 clients whose endpoint is configurable: moto on 127.0.0.1 locally, AWS in the cloud."""

from __future__ import annotations

from typing import Any

from twolane.settings import Settings, get_settings


def client(service: str, settings: Settings | None = None, **kwargs: Any) -> Any:
    """A boto3 client for `service` in `settings.aws_region`, pointed at
    `settings.aws_endpoint_url` (TWOLANE_AWS_ENDPOINT_URL) when set. The runtime passes its
    settings (`twolane.wiring`); without, the process's own (the local stack, tests, tools)."""
    # Lazy: boto3 and botocore take ~0.3 s to import, and the instant API's cold start needs
    # neither until a batch job is submitted.
    import boto3
    from botocore.config import Config

    s = settings or get_settings()
    kwargs.setdefault("region_name", s.aws_region)
    if s.aws_endpoint_url:
        kwargs.setdefault("endpoint_url", s.aws_endpoint_url)
    kwargs.setdefault("config", Config(retries={"max_attempts": 3, "mode": "standard"}))
    return boto3.client(service, **kwargs)
