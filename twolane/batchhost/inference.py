"""The batch lane's inference, as one request: parse a body, predict, serialise. Every host of
the batch model runs these same functions: the SageMaker container (`sagemaker/serve.py`,
which re-exports them as the inference toolkit's model_fn/input_fn/predict_fn/output_fn) and
the Lambda batch worker (`twolane.batchhost.worker`, behind `functions/batch_worker/handler.py`).

Body: {"items": [{"comment_id", "comment_text", "question_type"}...], "target": "m"|"s"|"ms",
"include_probabilities": false} (twolane.contract.JobRequest), or a plain list of items
(target "ms"). Answer: {"model_version", "target", "results": [{comment_id, labels,
sentiment}]}; never the comment text (summaries run on the LLM endpoint: twolane.summaries).
A bad body raises `BadRequest` (status 400 not JSON / 415 / 422, and a reason safe to show):
the container answers it as that status, the worker writes it as the failure object, both as
{"error": reason}.

Settings (`twolane.settings.Settings`; the process's own, `get_settings()`, unless a Model is
given others), by their environment variables:
    TWOLANE_INSTANT_BUNDLE      instant bundle when there is no instant/ in the model folder
    TWOLANE_ONNX_PROVIDERS      e.g. "CPUExecutionProvider" (default: CUDA when present)
    TWOLANE_ORT_PRELOAD_DLLS=1  load CUDA/cuDNN from the nvidia-* pip wheels (GPU image)
    TWOLANE_SERVE_DELAY_S       fault injection for tests: sleep before each prediction

Imports only onnxruntime, tokenizers, numpy and pydantic.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twolane.bundle import resolve_bundle
from twolane.contract import ItemsRejected, JobRequest, check_items, strict_json_loads
from twolane.predictors.batch import BatchPredictor
from twolane.settings import Settings, get_settings

SERVER_ERROR = "the model server failed on this request"  # the answer to an unexpected fault


class BadRequest(Exception):
    """The body cannot be served: `status` (400, 413, 415, 422) and a `reason` safe to show."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def error_body(reason: str) -> bytes:
    """The JSON body of an error answer (and of a failure object): {"error": reason}."""
    return json.dumps({"error": reason}).encode()


def instant_bundle_for(model_dir: Path, settings: Settings | None = None) -> Path | None:
    """The instant bundle for the ensemble: instant/ inside the model folder (model.tar.gz),
    else the settings' `instant_bundle` (TWOLANE_INSTANT_BUNDLE: a bundle or a bundles root;
    the local runner sets it), else None."""
    inside = model_dir / "instant"
    if (inside / "manifest.json").is_file():
        return inside
    configured = (settings or get_settings()).instant_bundle
    return resolve_bundle(configured, "instant") if configured else None


@dataclass
class Classify:
    request: JobRequest
    include_probabilities: bool = False

    @property
    def items(self) -> list[Any]:
        return self.request.items


class Model:
    """The loaded classifier. `settings`: the process's own (`get_settings()`) unless given."""

    def __init__(self, model_dir: Path, settings: Settings | None = None):
        self.settings = settings or get_settings()
        providers = self.settings.onnx_providers
        if self.settings.ort_preload_dlls:  # CUDA/cuDNN from the nvidia-* wheels (GPU image)
            import onnxruntime  # lazy: only the GPU image asks for it here

            onnxruntime.preload_dlls()
        self.model_dir = model_dir
        self.predictor = BatchPredictor.from_bundle(
            model_dir,
            providers=[p.strip() for p in providers.split(",")] if providers else None,
            instant_bundle=instant_bundle_for(model_dir, self.settings),
            threads=self.settings.intra_op_threads,  # 0: onnxruntime's default (one per core)
        )


# The four SageMaker inference-toolkit functions.

def model_fn(model_dir: str | os.PathLike[str]) -> Model:
    """The model in `model_dir` (a batch bundle folder, instant/ inside or TWOLANE_INSTANT_BUNDLE)."""
    return Model(Path(model_dir))


_models: dict[Path, Model] = {}
_models_lock = threading.Lock()


def cached_model(model_dir: Path, settings: Settings | None = None) -> Model:
    """One Model per folder per process, loaded on the first call (other threads wait for it):
    what a host that loads lazily (the Lambda batch worker) keeps between invocations."""
    with _models_lock:
        if model_dir not in _models:
            _models[model_dir] = Model(model_dir, settings)
        return _models[model_dir]


def input_fn(body: bytes | str, content_type: str | None = "application/json") -> Any:
    """Parse and validate the body: a Classify, or a list of items (as Classify).
    Raises BadRequest (400 not JSON, 415 content type, 422 invalid)."""
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/x-json", "*/*", ""):
        raise BadRequest(415, f"content type {ctype!r} is not supported; send application/json")
    try:
        data = strict_json_loads(body)  # no NaN / Infinity; comment text is cleaned by the contract
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "body is not valid JSON (NaN and Infinity are not JSON)") from exc
    if isinstance(data, list):
        data = {"items": data}
    if not isinstance(data, dict):
        raise BadRequest(422, "body must be a JSON object with 'items', or a list of items")
    try:
        include = data.pop("include_probabilities", False)
        if not isinstance(include, bool):
            raise BadRequest(422, "include_probabilities must be true or false")
        req = Classify(JobRequest.model_validate(data), include)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[:5]
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in first)
        raise BadRequest(422, f"invalid request: {reasons}") from exc
    try:
        check_items(req.items)  # the contract's checks (at least one, unique ids); no size limits
    except ItemsRejected as exc:
        raise BadRequest(exc.status, exc.reason) from None
    return req


def predict_fn(req: Any, model: Model) -> dict[str, Any]:
    """The answer to a parsed request (see the module docstring for its shape)."""
    delay = get_settings().serve_delay_s  # read per call: a test may change it between calls
    if delay:
        time.sleep(delay)
    results = model.predictor.predict(req.items, target=req.request.target,
                                      include_probabilities=req.include_probabilities)
    return {"model_version": model.predictor.version, "target": req.request.target,
            "results": [r.model_dump(mode="json") for r in results]}


def output_fn(prediction: dict[str, Any], accept: str | None = "application/json") -> bytes:
    """The answer as compact JSON bytes."""
    return json.dumps(prediction, separators=(",", ":")).encode("utf-8")
