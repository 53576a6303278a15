"""The serving container's contract (SageMaker hosting: GET /ping, POST /invocations) against the
real process (`python sagemaker/serve.py`) on a free port, and the model.tar.gz layout: packed,
unpacked like SageMaker does, served from there."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twolane.rules import LABELLING_NOT_POSSIBLE
from twolane.settings import REPO_ROOT

SERVE = REPO_ROOT / "sagemaker" / "serve.py"
ITEMS = [
    {"comment_id": "a", "comment_text": "The doctor listened and the nurses were so kind",
     "question_type": "what_good"},
    {"comment_id": "b", "comment_text": "Could not find anywhere to park, waited an hour",
     "question_type": "could_improve"},
    {"comment_id": "c", "comment_text": "Did not answer", "question_type": "nonspecific"},
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model_dir: Path, log: Path, **env: str):
        self.port = free_port()
        full = {**os.environ, "SM_MODEL_DIR": str(model_dir), "SAGEMAKER_BIND_TO_PORT": str(self.port),
                "TWOLANE_SERVE_HOST": "127.0.0.1", **env}
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([sys.executable, str(SERVE), "serve"], env=full,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if self.call("GET", "/ping")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("container did not become ready")

    def call(self, method: str, path: str, body: bytes | None = None,
             ctype: str | None = "application/json") -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": ctype} if ctype else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def invoke(self, payload: Any) -> tuple[int, Any]:
        return self.call("POST", "/invocations", json.dumps(payload).encode())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def served(batch_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(batch_bundle, tmp_path_factory.mktemp("serve") / "serve.log")
    yield s
    s.stop()


def test_ping(served: Served) -> None:
    assert served.call("GET", "/ping") == (200, {"status": "ok"})


def test_invocations_job_request(served: Served, batch_bundle: Path) -> None:
    from twolane.predictors.batch import BatchPredictor

    status, body = served.invoke({"items": ITEMS, "target": "ms"})
    assert status == 200, body
    predictor = BatchPredictor.from_bundle(batch_bundle)
    assert body["model_version"] == predictor.version and body["target"] == "ms"
    direct = predictor.predict_texts([i["comment_text"] for i in ITEMS], [i["question_type"] for i in ITEMS],
                               target="ms", ids=["a", "b", "c"])
    assert body["results"] == [p.model_dump(mode="json") for p in direct]
    assert body["results"][2]["labels"] == [LABELLING_NOT_POSSIBLE]
    assert body["results"][2]["sentiment"] is None
    assert "comment_text" not in json.dumps(body)


def test_invocations_plain_list_targets_and_probabilities(served: Served) -> None:
    status, body = served.invoke(ITEMS)  # a plain list of items: target "ms"
    assert status == 200 and body["target"] == "ms" and len(body["results"]) == 3
    status, body = served.invoke({"items": ITEMS, "target": "s"})
    assert status == 200
    assert [r["labels"] for r in body["results"][:2]] == [[], []]  # sentiment only
    assert body["results"][0]["sentiment"]["score"] in range(1, 6)
    status, body = served.invoke({"items": ITEMS[:1], "target": "m", "include_probabilities": True})
    assert status == 200
    r = body["results"][0]
    assert r["sentiment"] is None and len(r["probabilities"]) == 32 and r["labels"]


@pytest.mark.parametrize("raw, ctype, status, reason", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"items": []}', "application/json", 422, "no comments"),
    (b'{"items": [{"comment_id": "x", "text": "y"}]}', "application/json", 422, "items.0.text"),
    (b'{"items": [{"comment_text": "y"}]}', "application/json", 422, "comment_id"),
    (b'{"items": [{"comment_id": "x", "comment_text": "y"}], "target": "z"}', "application/json",
     422, "target"),
    (b'"just a string"', "application/json", 422, "JSON object"),
    (b"comment_id,comment_text\n1,hi\n", "text/csv", 415, "text/csv"),
    (b'{"items": [{"comment_id": "x", "comment_text": "y"}], "target": "summary"}',
     "application/json", 422, "target"),  # summaries run on the LLM endpoint, not here
    (b'{"items": [{"comment_id": "x", "comment_text": NaN}]}', "application/json", 400, "NaN"),
    (b'{"items": [{"comment_id": "x\\ud800", "comment_text": "y"}]}', "application/json", 422,
     "items.0.comment_id"),
])
def test_bad_bodies_get_a_reason(served: Served, raw: bytes, ctype: str, status: int, reason: str) -> None:
    got, body = served.call("POST", "/invocations", raw, ctype)
    assert got == status, body
    assert reason in body["error"]
    assert served.call("GET", "/ping")[0] == 200  # and it keeps serving


def test_lone_surrogate_in_a_comment_is_that_comments_text_not_a_failure(served: Served) -> None:
    """A lone surrogate (valid JSON, unencodable) is cleaned at the contract: the job is
    labelled, the other comments as if it were not there."""
    raw = json.dumps({"items": ITEMS, "target": "ms"}).replace(
        '"items": [', '"items": [{"comment_id": "s", "comment_text": "Lovely staff a\\ud800"}, ', 1)
    status, body = served.call("POST", "/invocations", raw.encode())
    assert status == 200, body
    assert [r["comment_id"] for r in body["results"]] == ["s", "a", "b", "c"]
    _, plain = served.invoke({"items": ITEMS, "target": "ms"})
    assert body["results"][1:] == plain["results"]


def test_empty_body_and_unknown_route(served: Served) -> None:
    assert served.call("POST", "/invocations", b"")[0] == 400
    assert served.call("GET", "/nope")[0] == 404
    assert served.call("POST", "/predict", b"{}")[0] == 404


def test_model_tar_gz_layout_and_serving_from_it(batch_bundle: Path, tmp_path: Path) -> None:
    from model_build.package import pack
    from twolane.bundle import read_manifest

    archive = pack(batch_bundle, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path / "opt-ml-model", filter="data")  # what SageMaker does
    manifest = read_manifest(batch_bundle)
    assert {"manifest.json", "code/inference.py", "code/requirements.txt",
            "code/twolane/predictors/batch.py"} <= names
    assert set(manifest.files) <= names  # model files at the archive root
    assert not any(n.startswith(("code/twolane/api/", "code/local_stack/")) for n in names)
    if manifest.ensemble:
        assert "instant/manifest.json" in names  # both bundles travel together
    assert "onnxruntime" in (tmp_path / "opt-ml-model/code/requirements.txt").read_text()

    model_dir = tmp_path / "opt-ml-model"
    s = Served(model_dir, tmp_path / "serve.log")
    try:
        status, body = s.invoke({"items": ITEMS, "target": "m"})
        assert status == 200 and body["model_version"] == manifest.version
        assert [r["comment_id"] for r in body["results"]] == ["a", "b", "c"]
    finally:
        s.stop()

    # The same file is the DLC's inference script: model_fn/input_fn/predict_fn/output_fn.
    import importlib.util

    spec = importlib.util.spec_from_file_location("inference_under_test",
                                                  model_dir / "code" / "inference.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as an import would
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    model = mod.model_fn(str(model_dir))
    out = json.loads(mod.output_fn(mod.predict_fn(mod.input_fn(json.dumps(ITEMS), "application/json"),
                                                  model), "application/json"))
    assert out["model_version"] == manifest.version and out["target"] == "ms"
    assert [r["comment_id"] for r in out["results"]] == ["a", "b", "c"]


def test_model_server_timeout_answers_504_with_a_reason(batch_bundle: Path, tmp_path: Path) -> None:
    """SAGEMAKER_MODEL_SERVER_TIMEOUT (set by infra to batch.invocation_timeout_s): an
    invocation computing longer is answered 504 with a short reason; the server goes on."""
    s = Served(batch_bundle, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_TIMEOUT="0.3",
               TWOLANE_SERVE_DELAY_S="1.0")
    try:
        status, body = s.invoke({"items": ITEMS[:1], "target": "m"})
        assert status == 504
        assert "timeout (0.3 s)" in body["error"] and "doctor" not in json.dumps(body)
        assert s.call("GET", "/ping")[0] == 200
    finally:
        s.stop()
    s = Served(batch_bundle, tmp_path / "serve2.log", SAGEMAKER_MODEL_SERVER_TIMEOUT="30",
               TWOLANE_SERVE_DELAY_S="0.2")
    try:  # under the limit: answered as ever
        status, body = s.invoke({"items": ITEMS, "target": "ms"})
        assert status == 200 and [r["comment_id"] for r in body["results"]] == ["a", "b", "c"]
    finally:
        s.stop()
