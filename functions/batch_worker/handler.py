"""PLACEHOLDER, replaced at merge by the runtime's real worker (branch lambdaworker).

It exists so that the infrastructure (the batch Lambda asset must hold this file, and synth and
tests/test_iam_enforced.py name its handler) builds and tests in this branch on its own.
"""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Interface: one asynchronous invocation per shard of a batch job."""
    raise NotImplementedError("placeholder batch worker: the runtime's handler replaces it")
