"""Shared by the infra test modules."""

from __future__ import annotations

from infra.config import DeployConfig


def endpoint_host(cfg: DeployConfig) -> DeployConfig:
    """The config on the async-endpoint host (GPU), the host tests/unit/test_infra.py and
    tests/unit/test_infra_prod.py test. The shipped configs carry the recommender's choice (the
    Lambda host for the NHS workload), tested in tests/functional/test_infra_lambda.py."""
    cfg.batch = cfg.batch.model_copy(update={"host": "async_endpoint",
                                             "instance_type": "ml.g4dn.xlarge"})
    return cfg
