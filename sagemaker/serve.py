"""The batch-lane serving process: the SageMaker hosting contract on one small HTTP server.

    GET  /ping         200 once the model is loaded (SageMaker's health check)
    POST /invocations  JSON in, JSON out (real-time and async endpoints call the same route)

Run as a file, never imported as `sagemaker` (that name is the AWS SDK's):
    SM_MODEL_DIR=bundles/batch/<version> python sagemaker/serve.py

Environment (SageMaker's names where it has one):
    SM_MODEL_DIR                     model folder (default /opt/ml/model): the batch bundle at
                                     its root, the instant bundle in instant/ (for the ensemble)
    TWOLANE_INSTANT_BUNDLE           instant bundle when there is no instant/ in SM_MODEL_DIR
    SAGEMAKER_BIND_TO_PORT           port (default 8080); host 0.0.0.0 (TWOLANE_SERVE_HOST)
    SAGEMAKER_MODEL_SERVER_WORKERS   invocations served at once (default 2); more wait
    SAGEMAKER_MODEL_SERVER_TIMEOUT   seconds one invocation may compute (default: no limit);
                                     past it the answer is 504 with a short reason (the work
                                     finishes in the background, still holding its slot)
    TWOLANE_ONNX_PROVIDERS           e.g. "CPUExecutionProvider" (default: CUDA when present)
    TWOLANE_ORT_PRELOAD_DLLS=1       load CUDA/cuDNN from the nvidia-* pip wheels (GPU image)
    TWOLANE_GENERATION_MODEL         causal LM (path) for "target": "summary"; default
                                     SM_MODEL_DIR/generation when that folder exists
    TWOLANE_SERVE_DELAY_S            fault injection for tests: sleep before each invocation
    TWOLANE_EXIT_WITH_PARENT         a pid: stop when that process (the local runner) is gone

Body: {"items": [{"comment_id", "comment_text", "question_type"}...], "target": "m"|"s"|"ms",
"include_probabilities": false} (twolane.contract.JobRequest), or a plain list of items
(target "ms"), or {"items": [...], "target": "summary", "instruction": "...",
"max_new_tokens": 200}. Answer: {"model_version", "target", "results": [{comment_id, labels,
sentiment}]} or {"model_version", "target": "summary", "items", "items_used", "summary"};
never the comment text. A bad body gets 400 (not JSON) / 415 / 422 with a reason.

The same functions serve an AWS deep-learning container (the file is packed as
code/inference.py): model_fn, input_fn, predict_fn, output_fn. They live in
twolane/batchhost/inference.py, which the Lambda batch worker runs too; this file is the HTTP
server around them.

Why http.server: only the standard library, so the process imports onnxruntime, tokenizers,
numpy and pydantic and nothing else; a ThreadingHTTPServer answers /ping while an invocation
runs, and onnxruntime releases the GIL during inference.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
log = logging.getLogger("twolane.serve")

MAX_BODY_BYTES = 100 * 1024 * 1024

try:  # installed (our image, the venv) or vendored next to this file (code/ in model.tar.gz)
    import twolane  # noqa: F401
except ImportError:  # a bare checkout: the repository root
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from twolane.batchhost.inference import (  # noqa: E402 (after the sys.path fallback above)
    SERVER_ERROR,
    BadRequest,
    Classify,
    Model,
    input_fn,
    instant_bundle_for,
    model_fn,
    output_fn,
    predict_fn,
)

__all__ = ["BadRequest", "Classify", "Model", "input_fn", "instant_bundle_for", "model_fn",
           "output_fn", "predict_fn"]


class InvocationTimeout(Exception):
    """predict_fn ran past SAGEMAKER_MODEL_SERVER_TIMEOUT."""


def predict_within(req: Any, model: Model, slots: threading.BoundedSemaphore,
                   timeout_s: float | None) -> dict[str, Any]:
    """predict_fn in a slot, raising InvocationTimeout after `timeout_s` (None: no limit).
    Python cannot stop the computation, so on a timeout it runs on in its thread and keeps its
    slot until done: the server never computes more than its workers at once."""
    if not timeout_s:
        with slots:
            return predict_fn(req, model)
    slots.acquire()
    box: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["out"] = predict_fn(req, model)
        except BaseException as exc:  # handed to the request's thread
            box["exc"] = exc
        finally:
            slots.release()
            done.set()

    threading.Thread(target=work, name="invocation", daemon=True).start()
    if not done.wait(timeout_s):
        raise InvocationTimeout
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def server_timeout_s() -> float | None:
    """SAGEMAKER_MODEL_SERVER_TIMEOUT in seconds; None when unset, empty or 0."""
    raw = os.environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        log.warning("SAGEMAKER_MODEL_SERVER_TIMEOUT is not a number; no timeout")
        return None
    return value if value > 0 else None


# The HTTP server.

class Handler(BaseHTTPRequestHandler):
    server_version = "twolane-batch/1"
    disable_nagle_algorithm = True  # headers and body in one segment: no 40 ms delayed-ACK stall
    protocol_version = "HTTP/1.1"
    model: Model | None = None
    slots: threading.BoundedSemaphore
    timeout_s: float | None = None

    def log_message(self, fmt: str, *args: Any) -> None:  # one line per request, to stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, reason: str) -> None:
        self._send(status, json.dumps({"error": reason}).encode())

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/ping":
            if self.model is None:
                self._error(503, "model not loaded")
            else:
                self._send(200, b'{"status":"ok"}')
        else:
            self._error(404, f"no route {self.path}; use GET /ping or POST /invocations")

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/invocations":
            self._error(404, f"no route {self.path}; use POST /invocations")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            self._error(400, "empty body: send JSON with 'items'")
            return
        if length > MAX_BODY_BYTES:
            self._error(413, f"body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")
            return
        body = self.rfile.read(length)
        if self.model is None:
            self._error(503, "model not loaded")
            return
        try:
            req = input_fn(body, self.headers.get("Content-Type"))
            out = predict_within(req, self.model, self.slots, self.timeout_s)
            self._send(200, output_fn(out, self.headers.get("Accept")))
        except BadRequest as exc:
            self._error(exc.status, exc.reason)
        except InvocationTimeout:
            log.error("invocation ran past the %.0f s model server timeout", self.timeout_s or 0)
            self._error(504, f"the model did not finish within the model server's timeout "
                             f"({self.timeout_s:g} s); send fewer comments per request")
        except Exception as exc:  # a real fault: keep serving; the message may hold input text
            import traceback

            log.error("invocation failed: %s\n%s", type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            self._error(500, SERVER_ERROR)


def exit_with_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """Stop this process (SIGTERM to itself) once `parent_pid` is no longer its parent: the
    local runner that started it was killed, even with SIGKILL, which it cannot catch."""
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    log.warning("parent %d is gone: stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    logging.basicConfig(level=os.environ.get("TWOLANE_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parent = os.environ.get("TWOLANE_EXIT_WITH_PARENT")  # set by local_stack.runner, not on AWS
    if parent:
        threading.Thread(target=exit_with_parent, args=(int(parent),), daemon=True).start()
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("TWOLANE_SERVE_HOST", "0.0.0.0")
    workers = max(1, int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "2") or 2))

    Handler.slots = threading.BoundedSemaphore(workers)
    Handler.timeout_s = server_timeout_s()
    Handler.model = model_fn(model_dir)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("model %s loaded from %s; serving on %s:%d (%d workers) %.3f s after start",
             Handler.model.predictor.version, model_dir, host, port, workers,
             time.perf_counter() - T_START)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] not in ("serve",):  # SageMaker runs `<image> serve`
        sys.exit(f"usage: {sys.argv[0]} [serve]")
    main()
