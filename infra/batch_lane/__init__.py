"""Batch lane: a SageMaker asynchronous endpoint that scales to zero (our own construct; the
CDK has no L2 for async endpoints, aws-cdk issue 23149)."""

from infra.batch_lane.endpoint import AsyncEndpoint

__all__ = ["AsyncEndpoint"]
