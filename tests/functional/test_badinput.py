"""Bad input never breaks, leaks or loses (issue 11), on the real small bundle.

The known cases one by one (API, jobs, drop folder, each against what it used to do), a corpus
of bad files that must each end in outbox/ or failed/ with a report, and property-based fuzz
(Hypothesis: text with lone surrogates, NUL and control characters; NaN and Infinity; odd
JSON shapes) over every route and over the drop-folder readers, bounded to a few seconds.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from batchlane_helpers import mocked_s3
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twolane.api.app import create_app
from twolane.api.errors import Problem
from twolane.api.gate import StrictRoute
from twolane.dropfolder.formats import FormatError, read_items
from twolane.dropfolder.process import process_event
from twolane.jobs.invoker import Invocation
from twolane.jobs.service import JobService
from twolane.jobs.store import S3JobStore
from twolane.layout import MAX_KEY_BYTES
from twolane.settings import Settings

BUCKET = "twolane-badinput"
SECRET = "Mrs Quigley-Xanthe ward 7 secret"  # stands for patient text: must never come back
KEYS = ("key-alpha-123", "key-beta-456")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
GOOD = {"comment_id": "g", "comment_text": "The nurses were kind and the food was cold",
        "question_type": "what_good"}


# --- fixtures: a real small predictor, S3 in-process (moto), a jobs service that never runs --

@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as c:
        yield c


class PendingInvoker:
    """Accepts every job and never finishes it (the container's side is tested elsewhere)."""

    def unavailable_reason(self, kind: str) -> str | None:
        return None

    def invoke(self, *, input_location: str, inference_id: str, kind: str) -> Invocation:
        out = f"s3://{BUCKET}/batch/output/{inference_id}.out"
        return Invocation(inference_id=inference_id, output_location=out, failure_location=None,
                          endpoint="test")


def make_client(predictor: Any, s3: Any, **kw: Any) -> TestClient:
    st_ = Settings(bucket=BUCKET, **kw)
    jobs = JobService(S3JobStore(s3, BUCKET), PendingInvoker(), st_.batch)  # type: ignore[arg-type]
    return TestClient(create_app(predictor, st_, jobs=jobs), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(predictor: Any, s3: Any) -> Iterator[TestClient]:
    with make_client(predictor, s3) as c:
        yield c


@pytest.fixture(scope="module")
def keyed(predictor: Any, s3: Any) -> Iterator[TestClient]:
    with make_client(predictor, s3, api_keys=",".join(KEYS)) as c:
        yield c


def raw(client: TestClient, path: str, body: str, **headers: str) -> Any:
    return client.post(path, content=body.encode("utf-8"),
                       headers={"content-type": "application/json", **headers})


def is_problem(r: Any) -> dict[str, Any]:
    """The response is the documented error shape, and holds no secret text or key."""
    body = r.json()
    Problem.model_validate(body)
    assert SECRET not in r.text and not any(k in r.text for k in KEYS)
    return body


# --- API: text that cannot be encoded -----------------------------------------------------------

def test_lone_surrogate_in_a_comment_is_cleaned_not_a_500(client: TestClient, predictor: Any) -> None:
    body = '{"items": [{"comment_id": "s", "comment_text": "Kind staff a\\ud800"}]}'
    r = raw(client, "/v1/predict", body)
    assert r.status_code == 200, r.text
    direct = predictor.predict_texts(["Kind staff a\ufffd"], ids=["s"])
    assert r.json()["results"][0]["labels"] == direct[0].labels
    px = '[{"comment_id": "s", "comment_text": "a\\udfff b", "question_type": "nonspecific"}]'
    r = raw(client, "/predict_multilabel", px)
    assert r.status_code == 200 and r.json()[0]["comment_id"] == "s"
    assert "comment_text" not in r.json()[0]  # pxtextmining's answer never echoes the text


def test_lone_surrogate_in_an_id_or_invalid_item_is_a_422_naming_the_field(client: TestClient) -> None:
    r = raw(client, "/v1/predict", '{"items": [{"comment_id": "x\\ud800", "comment_text": "hi"}]}')
    assert r.status_code == 422
    assert is_problem(r)["detail"][0]["loc"] == ["body", "items", 0, "comment_id"]
    bad = f'{{"items": [{{"comment_id": "1", "comment_text": "{SECRET}", "odd\\ud800": "\\udc00"}}]}}'
    r = raw(client, "/v1/predict", bad)
    assert r.status_code == 422 and is_problem(r)["detail"][0]["loc"][:3] == ["body", "items", 0]
    r = raw(client, "/predict_multilabel", '[{"comment_id": "\\ud800", "comment_text": 5}]')
    assert r.status_code == 422 and is_problem(r)


def test_job_with_a_surrogate_comment_is_accepted_and_stored_clean(client: TestClient, s3: Any) -> None:
    body = '{"items": [{"comment_id": "a", "comment_text": "ok \\ud800"}, {"comment_id": "b"}]}'
    r = raw(client, "/v1/jobs", body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    stored = s3.get_object(Bucket=BUCKET, Key=f"batch/input/{job_id}.json")["Body"].read()
    assert json.loads(stored)["items"][0]["comment_text"] == "ok \ufffd"


@pytest.mark.parametrize("path,body", [
    ("/v1/predict", '{"items": [{"comment_id": "1", "comment_text": NaN}]}'),
    ("/v1/predict", '{"items": [{"comment_id": "1", "comment_text": "x"}], "include_probabilities": Infinity}'),
    ("/v1/jobs", '{"items": [{"comment_id": "1", "comment_text": "x"}], "target": -Infinity}'),
    ("/v1/jobs", '{"items": [{"comment_id": "1", "comment_text": "x"}], "x": NaN}'),
    ("/predict_multilabel", '[{"comment_id": NaN, "comment_text": "x", "question_type": "nonspecific"}]'),
    ("/v1/predict", '{"items": [{"comment_id": ' + "9" * 4301 + ', "comment_text": "x"}]}'),
])
def test_nan_infinity_and_huge_numbers_are_422(client: TestClient, path: str, body: str) -> None:
    r = raw(client, path, body)
    assert r.status_code == 422, r.text
    assert is_problem(r)["detail"][0]["type"] == "json_invalid"


def test_422_never_echoes_text(client: TestClient) -> None:
    for body in ({"items": [{"comment_id": "1", "comment_text": SECRET, "question_type": "bad"}]},
                 {"items": [{"comment_id": "1", "comment_text": [SECRET]}]},
                 {"items": SECRET}, [{"comment_id": "1", "comment_text": SECRET}]):
        for path in ("/v1/predict", "/predict_multilabel", "/v1/jobs"):
            if path == "/predict_multilabel" and isinstance(body, list):
                continue  # pxtextmining's own schema: a valid request there
            r = client.post(path, json=body)
            assert r.status_code == 422, (path, body)
            is_problem(r)


def test_own_422_matches_the_documented_shape(client: TestClient) -> None:
    items = [{"comment_id": "x", "comment_text": "a"}, {"comment_id": "x", "comment_text": SECRET}]
    r = client.post("/v1/predict", json={"items": items})
    assert r.status_code == 422 and is_problem(r)["comment_ids"] == ["x"]
    spec = client.get("/openapi.json").json()
    resp = spec["paths"]["/v1/predict"]["post"]["responses"]
    for code in ("401", "413", "422", "500", "503"):
        assert resp[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "x-api-key",
        "description": "An API key, when the service has keys set (all routes but /health)."}


def test_errors_name_no_paths_or_exception_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(settings=Settings(bundles=tmp_path / "no-such-place", instant_bundle=None))
    with TestClient(app, raise_server_exceptions=False) as c:
        for r in (c.get("/health"), c.post("/v1/predict", json={"items": [GOOD]}), c.get("/v1/models")):
            assert r.status_code == 503
            assert str(tmp_path) not in r.text and "Error" not in r.text, r.text
    assert str(tmp_path) in caplog.text  # the details are in the log, for the operator


class _Leaky:
    version = "leaky"

    def predict(self, items: Any, **_: Any) -> Any:
        raise RuntimeError(f"cannot encode {items[0].comment_text!r}")


def test_a_fault_logs_no_comment_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # raise_server_exceptions: the fault must not reach the server (uvicorn would log its message)
    with TestClient(create_app(_Leaky(), Settings()), raise_server_exceptions=True) as c:
        r = c.post("/v1/predict", json={"items": [dict(GOOD, comment_text=SECRET)]})
    assert r.status_code == 500 and is_problem(r)["request_id"] in caplog.text
    assert SECRET not in caplog.text and "RuntimeError" in caplog.text


# --- API: auth ---------------------------------------------------------------------------------

def test_every_route_but_health_needs_a_key_before_the_body(keyed: TestClient) -> None:
    assert keyed.get("/health").status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json", "/v1/models", "/v1/jobs/" + "0" * 32, "/nope"):
        r = keyed.get(path)
        assert r.status_code == 401, path
        is_problem(r)
    for path in ("/v1/predict", "/predict_multilabel", "/v1/jobs", "/v1/summaries"):
        assert raw(keyed, path, '{"items": [').status_code == 401  # invalid JSON: 401 first
        assert raw(keyed, path, "{}", **{"x-api-key": "wrong"}).status_code == 401
    assert keyed.get("/openapi.json", headers={"x-api-key": KEYS[0]}).status_code == 200
    assert keyed.get("/docs", headers={"x-api-key": KEYS[1]}).status_code == 200


def test_docs_can_be_turned_off(predictor: Any) -> None:
    with TestClient(create_app(predictor, Settings(docs=False))) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404


def test_a_job_belongs_to_the_key_that_made_it(keyed: TestClient) -> None:
    r = keyed.post("/v1/jobs", json={"items": [GOOD]}, headers={"x-api-key": KEYS[0]})
    assert r.status_code == 202
    url = r.json()["results_url"]
    other = keyed.get(url, headers={"x-api-key": KEYS[1]})
    assert other.status_code == 404 and is_problem(other)["detail"] == "no such job"
    assert keyed.get(url, headers={"x-api-key": KEYS[0]}).status_code == 202


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI includes them as they are)."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            out.extend(api_routes(r.original_router.routes))
    return out


def test_every_route_reads_json_strictly(predictor: Any) -> None:
    routes = api_routes(create_app(predictor, Settings()).routes)
    assert routes and all(isinstance(r, StrictRoute) for r in routes), \
        [r.path for r in routes if not isinstance(r, StrictRoute)]


# --- API fuzz ----------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates (Cs), NUL and controls included
TEXT = st.text(ANY_CHAR, max_size=30) | st.sampled_from(["", "n/a", "\ud800", "a\udfffb", "\x00", "\u2028"])
SCALAR = (st.none() | st.booleans() | st.integers() | TEXT
          | st.floats(allow_nan=True, allow_infinity=True))
JSONISH = st.recursive(SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3),
                       max_leaves=12)
ITEM = st.fixed_dictionaries(
    {"comment_id": TEXT | st.integers() | st.just("id-1"), "comment_text": TEXT | SCALAR},
    optional={"question_type": st.sampled_from(["what_good", "nonspecific", "bad"]) | TEXT,
              "extra": JSONISH})
BODY = (st.fixed_dictionaries({"items": st.lists(ITEM, max_size=4)},
                              optional={"target": st.sampled_from(["m", "s", "ms", "summary"]) | JSONISH,
                                        "include_probabilities": SCALAR, "instruction": TEXT})
        | st.lists(ITEM, max_size=4) | JSONISH)


@FUZZ
@given(path=st.sampled_from(["/v1/predict", "/predict_multilabel", "/v1/jobs", "/v1/summaries"]),
       body=BODY)
def test_fuzz_post_routes_never_5xx(client: TestClient, path: str, body: Any) -> None:
    r = raw(client, path, json.dumps(body, allow_nan=True))  # ensure_ascii: surrogates as \\udXXX
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        is_problem(r)


@FUZZ
@given(job_id=TEXT, path=st.sampled_from(["/health", "/v1/models", "/v1/jobs/{}", "/{}"]))
def test_fuzz_get_routes_never_5xx(client: TestClient, job_id: str, path: str) -> None:
    url = path.format(quote(job_id.encode("utf-8", "surrogatepass"), safe=""))
    r = client.get(url)
    assert r.status_code < 500, (url, r.text)
    if r.status_code >= 400:
        is_problem(r)


# --- drop folder: the corpus ---------------------------------------------------------------------

def csv_of(rows: list[tuple[str, str]], header: str = "comment_id,comment_text\n") -> str:
    return header + "".join(f'{i},"{t}"\n' for i, t in rows)


CURLY = [("1", "The nurse\u2019s care was \u201cexcellent\u201d"), ("2", "Parking \u2013 awful"),
         ("3", "Staff\u2019s kindness \u2013 thank you")]


def mixed_cp1252() -> bytes:
    """UTF-8 rows with curly quotes, and one row with a single Windows-1252 byte (0x92, a ’)."""
    lines = csv_of(CURLY).encode("utf-8").split(b"\n")
    lines[2] = b'2,"Parking \x92 awful"'
    return b"\n".join(lines)


# name -> (bytes, where it ends, what its report or outcome must say)
BADFILES: dict[str, tuple[bytes, str, str]] = {
    "surrogate_text.json": (b'[{"comment_id": "1", "comment_text": "Kind \\ud800 staff"},'
                            b' {"comment_id": "2", "comment_text": "Cold food"}]', "outbox", ""),
    "surrogate_text.jsonl": (b'{"comment_id": "1", "comment_text": "\\udc00"}\n', "outbox", ""),
    "surrogate_id.jsonl": (b'{"comment_id": "x\\ud800", "comment_text": "fine"}\n', "failed",
                           "line 1: comment_id"),
    "surrogate_bytes.csv": (b'comment_id,comment_text\n1,"ok \xed\xa0\x80"\n2,"fine"\n', "outbox", ""),
    "bigint.json": (b'[{"comment_id": ' + b"7" * 4301 + b', "comment_text": "x"}]', "failed", "too large"),
    "nested.json": (b"[" * 1000 + b"]" * 1000, "failed", "not valid JSON"),
    "nested_open.json": (b"[" * 1000, "failed", "not valid JSON"),
    # pxtextmining's data_in files (pandas) hold NaN for a missing text: one unlabellable row
    "nan.json": (b'[{"comment_id": "1", "comment_text": NaN}]', "outbox", ""),
    "infinity.json": (b'[{"comment_id": "1", "comment_text": Infinity}]', "failed", "Infinity"),
    "separators.jsonl": ('{"comment_id": "1", "comment_text": "a\u2028b"}\n'
                         '{"comment_id": "2", "comment_text": "c\u2029d\u0085e"}\n'.encode(), "outbox", ""),
    "mixed_cp1252.csv": (mixed_cp1252(), "outbox", ""),
    "utf16_bom.csv": (csv_of(CURLY).encode("utf-16"), "outbox", ""),
    "utf16_nobom.csv": (csv_of(CURLY).encode("utf-16-le"), "failed", "UTF-16"),
    "noheader.csv": (f'1,"{SECRET}"\n2,"more"\n'.encode(), "failed", "lacks column"),
    # an unknown question type is read as nonspecific (as pxtextmining does), never echoed
    "qt_text.csv": (f'comment_id,comment_text,question_type\n1,x,"{SECRET}"\n'.encode(), "outbox", ""),
    "zero.csv": (b"", "failed", "empty"),
    "header_only.csv": (b"comment_id,comment_text\r\n", "failed", "no comments"),
    "binary.csv": (b"\x81\x8d\x8f\x90\x9d" * 10, "failed", "line 1: not UTF-8"),
    "cr_only.csv": (b"comment_id,comment_text\r1,hello\r2,there\r", "outbox", ""),
}


@pytest.fixture()
def drop(s3: Any) -> Iterator[Any]:
    yield s3
    for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        if o["Key"].startswith(("inbox/", "outbox/", "failed/")):
            s3.delete_object(Bucket=BUCKET, Key=o["Key"])


def drop_one(s3: Any, predictor: Any, key: str, data: bytes) -> dict[str, Any]:
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    event = {"Records": [{"eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote(key)}}}]}
    (outcome,) = process_event(event, predictor, s3=s3, settings=Settings(bucket=BUCKET))["outcomes"]
    return outcome


@pytest.mark.parametrize("name", sorted(BADFILES))
def test_every_bad_file_ends_in_outbox_or_failed_with_a_report(drop: Any, predictor: Any, name: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    data, where, says = BADFILES[name]
    o = drop_one(drop, predictor, f"inbox/{name}", data)
    listed = {x["Key"] for x in drop.list_objects_v2(Bucket=BUCKET).get("Contents", [])
              if x["Key"].startswith(("inbox/", "outbox/", "failed/"))}
    if where == "outbox":
        assert o["status"] == "done", o
        assert listed == {f"outbox/{name}"}
    else:
        assert o["status"] == "failed" and says in o["detail"], o
        assert listed == {f"failed/{name}", f"failed/{name}.error.json"}
        report = drop.get_object(Bucket=BUCKET, Key=f"failed/{name}.error.json")["Body"].read()
        assert says in json.loads(report)["error"] and SECRET not in report.decode()
        assert drop.get_object(Bucket=BUCKET, Key=f"failed/{name}")["Body"].read() == data
    assert SECRET not in json.dumps(o) and SECRET not in caplog.text


def test_one_windows_1252_byte_leaves_the_other_rows_as_written(predictor: Any) -> None:
    items = read_items(mixed_cp1252(), "csv")
    assert [i.comment_text for i in items] == [CURLY[0][1], "Parking \u2019 awful", CURLY[2][1]]
    assert [i.comment_text for i in read_items(csv_of(CURLY).encode("utf-16"), "csv")] == [t for _, t in CURLY]
    whole_cp1252 = csv_of(CURLY).encode("cp1252")  # Excel on Windows: still read as written
    assert [i.comment_text for i in read_items(whole_cp1252, "csv")] == [t for _, t in CURLY]


def test_keys_near_s3s_limit_get_results_s3_accepts(drop: Any, predictor: Any) -> None:
    name = "inbox/" + "\u00e9" * 505 + ".csv"  # 1,020 bytes: outbox/ and failed/ add more
    assert len(name.encode()) <= MAX_KEY_BYTES
    o = drop_one(drop, predictor, name, csv_of(CURLY).encode())
    assert o["status"] == "done" and len(o["result_key"].encode()) <= MAX_KEY_BYTES
    assert o["result_key"].startswith("outbox/") and o["result_key"].endswith(".csv")
    o = drop_one(drop, predictor, name, b"")
    assert o["status"] == "failed" and len((o["result_key"] + ".error.json").encode()) <= MAX_KEY_BYTES
    assert drop.head_object(Bucket=BUCKET, Key=o["result_key"] + ".error.json")


# --- drop folder fuzz: the readers return comments or a FormatError, nothing else ---------------

@FUZZ
@given(data=st.binary(max_size=300), family=st.sampled_from(["csv", "json", "jsonl"]))
def test_fuzz_readers_on_any_bytes(data: bytes, family: Any) -> None:
    try:
        items = read_items(data, family)
    except FormatError:
        return
    for i in items:
        (i.comment_text or "").encode("utf-8")  # clean: never raises
        i.comment_id.encode("utf-8")


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, TEXT | SCALAR), min_size=1, max_size=5),
       family=st.sampled_from(["csv", "json", "jsonl"]), encoding=st.sampled_from(["utf-8", "utf-16"]))
def test_fuzz_readers_on_comments(rows: list[tuple[str, Any]], family: Any, encoding: str) -> None:
    objs = [{"comment_id": i, "comment_text": t} for i, t in rows]
    if family == "json":
        text = json.dumps(objs, allow_nan=True)
    elif family == "jsonl":
        text = "".join(json.dumps(o, allow_nan=True) + "\n" for o in objs)
    else:
        text = "comment_id,comment_text\n" + "".join(
            f'"{str(i).replace(chr(34), chr(34) * 2)}","{str(t).replace(chr(34), chr(34) * 2)}"\n'
            for i, t in rows)
    data = text.encode(encoding, "surrogatepass")
    try:
        items = read_items(data, family)
    except FormatError as exc:
        assert all(str(t) not in str(exc) for _, t in rows if len(str(t)) > 8)
        return
    for i in items:
        (i.comment_text or "").encode("utf-8")
        i.comment_id.encode("utf-8")


def test_unique_job_ids_are_hex(client: TestClient) -> None:
    r = client.get(f"/v1/jobs/{uuid.uuid4().hex}")
    assert r.status_code == 404 and is_problem(r)["detail"] == "no such job"


# --- local stack lifecycle -------------------------------------------------------------------------

def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie nobody has reaped yet is gone too


def test_the_batch_container_stops_when_its_runner_is_killed(tmp_path: Path) -> None:
    """SIGKILL on `twolane up` (the runner) cannot be caught; the container watches its parent."""
    import signal
    import subprocess
    import sys
    import time

    serve_dir = Path(__file__).resolve().parents[2] / "sagemaker"
    child = (f"import sys, os, time; sys.path.insert(0, {str(serve_dir)!r}); import serve; "
             "serve.exit_with_parent(int(os.environ['TWOLANE_EXIT_WITH_PARENT']), 0.1); time.sleep(120)")
    parent = ("import os, subprocess, sys, time; env = dict(os.environ, TWOLANE_EXIT_WITH_PARENT=str(os.getpid())); "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=env, start_new_session=True); "
              "print(p.pid, flush=True); time.sleep(120)")
    runner = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE)
    assert runner.stdout is not None
    pid = int(runner.stdout.readline())
    try:
        assert not _gone(pid)  # alive while its parent is
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        end = time.monotonic() + 20
        while not _gone(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert _gone(pid), "the container outlived its runner"
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_port_left_in_time_wait_counts_as_free() -> None:
    import socket

    from local_stack.stack import port_is_free

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end of the port sits in TIME_WAIT
    srv.close()
    cli.close()
    assert port_is_free(port)


def test_watcher_waits_for_a_slow_writer_and_uploads_once(drop: Any, predictor: Any, tmp_path: Path) -> None:
    """A writer that reopens the file for each chunk and pauses 1.2 s between them: the local
    watcher uploads it once, whole (60 rows), not half-written and not four times."""
    import time

    from local_stack.watcher import DropFolderWatcher

    outcomes: list[dict[str, Any]] = []
    watcher = DropFolderWatcher(drop, BUCKET, predictor,
                                Settings(bucket=BUCKET, poll_seconds=0.1, drop_settle_seconds=2.5),
                                tmp_path, outcomes.append)
    watcher.start()
    try:
        rows = [f'{n},"Comment number {n} about the ward"\n' for n in range(60)]
        target = tmp_path / "inbox" / "slow.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        for i, chunk in enumerate((["comment_id,comment_text\n", *rows[:20]], rows[20:40], rows[40:])):
            with open(target, "a", encoding="utf-8") as f:
                f.writelines(chunk)
            if i < 2:
                time.sleep(1.2)
        result = tmp_path / "outbox" / "slow.csv"
        end = time.monotonic() + 30
        while not result.is_file() and time.monotonic() < end:
            time.sleep(0.05)
        assert result.is_file(), outcomes
        time.sleep(0.5)  # not a wait for a condition: time for a second upload to show, were there one
    finally:
        watcher.stop()
    # the folders the README tells users to use exist from the start, inbox/batch/ included
    assert all((tmp_path / d).is_dir() for d in ("inbox", "inbox/batch", "outbox", "failed"))
    assert [o["status"] for o in outcomes] == ["done"] and outcomes[0]["comments"] == 60
    assert result.read_text().count("\n") == 61
