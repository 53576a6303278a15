"""The serving entry points (the Lambda handlers, the batch container) load only the runtime:
no build, local-stack, infra or recommender code, and no training libraries (import-linter
checks the imports as written; this checks what a cold start really loads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NEVER = ("model_build", "local_stack", "infra", "recommender", "sklearn", "xgboost", "pandas",
         "torch", "transformers", "skl2onnx", "aws_cdk")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""

CONTAINER_PROBE = """
import json, runpy, sys
serve = runpy.run_path(sys.argv[1])
serve["model_fn"](sys.argv[2])
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


WORKER_PROBE = """
import importlib, json, sys
worker = importlib.import_module("functions.batch_worker.handler")
worker._get_worker().model()  # what its first event loads
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def _loaded(args: list[str], bundle: Path, **extra: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOLANE_", "AWS_"))}
    env.update(extra)
    env.update(TWOLANE_INSTANT_BUNDLE=str(bundle), AWS_DEFAULT_REGION="eu-west-2",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               POWERTOOLS_METRICS_NAMESPACE="twolane-test", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("handler", ["functions.api.handler", "functions.dropfolder.handler",
                                     "functions.notifications.handler",
                                     "functions.batch_worker.handler",
                                     "functions.api.authorizer.handler"])
def test_lambda_handlers_load_only_the_runtime(handler: str, instant_bundle: Path) -> None:
    loaded = _loaded([PROBE, handler], instant_bundle)
    assert "twolane" in loaded or handler.endswith("authorizer.handler")
    assert not loaded & set(NEVER), loaded & set(NEVER)


def test_container_loads_only_the_runtime(batch_bundle: Path, instant_bundle: Path) -> None:
    loaded = _loaded([CONTAINER_PROBE, str(REPO / "sagemaker" / "serve.py"), str(batch_bundle)],
                     instant_bundle)
    assert "twolane" in loaded and "onnxruntime" in loaded
    assert not loaded & set(NEVER), loaded & set(NEVER)


def test_batch_worker_loads_only_the_runtime(batch_bundle: Path, instant_bundle: Path) -> None:
    topic = "arn:aws:sns:eu-west-2:123456789012:twolane-batch-"
    loaded = _loaded([WORKER_PROBE], instant_bundle, TWOLANE_BATCH_BUNDLE=str(batch_bundle),
                     TWOLANE_BATCH_SUCCESS_TOPIC_ARN=topic + "success",
                     TWOLANE_BATCH_ERROR_TOPIC_ARN=topic + "error")
    assert "twolane" in loaded and "onnxruntime" in loaded and "tokenizers" in loaded
    assert not loaded & set(NEVER), loaded & set(NEVER)
