"""The S3 drop folder against moto, driven by real S3 event payloads and a real small bundle."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from twolane.dropfolder.process import process_event
from twolane.rules import CONTENT_FREE_SENTIMENT, LABELLING_NOT_POSSIBLE
from twolane.settings import Settings

BUCKET = "twolane-drop-test"
ROWS = [
    ("c1", "The nurses were kind and explained everything clearly", "what_good"),
    ("c2", "Waited four hours in A&E and parking was impossible", "could_improve"),
    ("c3", "n/a", "nonspecific"),
    ("c4", "Food was cold, and the ward was noisy at night", ""),
]


def s3_event(key: str, bucket: str = BUCKET, size: int = 100) -> dict[str, Any]:
    """An S3 ObjectCreated:Put notification exactly as S3 sends it to Lambda (key URL-encoded)."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-2",
        "eventTime": "2025-03-10T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                             "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "inbox-created",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size,
                          "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "sequencer": "0055AED6DCD90281E5"}},
    }]}


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        c = boto3.client("s3", region_name="eu-west-2")
        c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        yield c


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def body(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def csv_bytes(rows: list[tuple[str, str, str]] = ROWS, encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["comment_id", "comment_text", "question_type"])
    w.writerows(rows)
    return out.getvalue().encode(encoding)


def run(s3: Any, predictor: Any, key: str, **settings: Any) -> dict[str, Any]:
    out = process_event(s3_event(key), predictor, s3=s3, settings=Settings(**settings))
    assert len(out["outcomes"]) == 1
    return out["outcomes"][0]


def check_results(results: list[dict[str, Any]], predictor: Any) -> None:
    assert [r["comment_id"] for r in results] == ["c1", "c2", "c3", "c4"]
    direct = predictor.predict_texts([r[1] for r in ROWS], ids=[r[0] for r in ROWS],
                               contexts=[r[2] or None for r in ROWS])
    assert [r["labels"] for r in results] == [p.labels for p in direct]
    assert results[2]["labels"] == [LABELLING_NOT_POSSIBLE]


def test_csv_to_outbox(s3: Any, predictor: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="inbox/ward.csv", Body=csv_bytes())
    o = run(s3, predictor, "inbox/ward.csv")
    assert o["status"] == "done" and o["result_key"] == "outbox/ward.csv" and o["comments"] == 4
    assert keys(s3) == {"outbox/ward.csv"}  # inbox deleted
    text = body(s3, "outbox/ward.csv").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["comment_id", "labels", "sentiment", "sentiment_label"]
    check_results([dict(r, labels=r["labels"].split("; ")) for r in rows], predictor)
    assert "nurses" not in text and "parking" not in text  # no comment text in results
    assert rows[2]["sentiment"] == "" and rows[0]["sentiment"] in "12345"
    head = s3.head_object(Bucket=BUCKET, Key="outbox/ward.csv")
    assert head["Metadata"]["model-version"] == predictor.version


def test_json_list_like_pxtextmining_data_in(s3: Any, predictor: Any) -> None:
    """A bare JSON list is pxtextmining's data_in: its data_out comes back (keys in its order,
    sentiment a number, "Labelling not possible" only for blank text; "n/a" gets the
    content-free sentiment and LNP labels)."""
    doc = [{"comment_id": c, "comment_text": t, "question_type": q or "nonspecific"} for c, t, q in ROWS]
    doc[3]["question_type"] = ""  # blank question_type: allowed
    doc.append({"comment_id": "c5", "comment_text": float("nan"), "question_type": "nonspecific"})
    doc.append({"comment_id": 6, "question_type": "what_good"})  # R drops an NA text's key
    s3.put_object(Bucket=BUCKET, Key="inbox/data_in.json", Body=json.dumps(doc).encode())
    assert b"NaN" in body(s3, "inbox/data_in.json")
    assert run(s3, predictor, "inbox/data_in.json")["status"] == "done"
    assert keys(s3) == {"outbox/data_in.json"}
    results = json.loads(body(s3, "outbox/data_in.json"))
    assert [r["comment_id"] for r in results] == ["c1", "c2", "c3", "c4", "c5", "6"]
    assert all(list(r) == ["comment_id", "sentiment", "labels"] for r in results)
    assert [r["sentiment"] for r in results[4:]] == [LABELLING_NOT_POSSIBLE] * 2
    assert results[2] == {"comment_id": "c3", "sentiment": CONTENT_FREE_SENTIMENT,
                          "labels": [LABELLING_NOT_POSSIBLE]}
    assert all(r["sentiment"] in range(1, 6) for r in results[:4])


@pytest.mark.parametrize("name,keys_", [("t.m.json", ["comment_id", "labels"]),
                                        ("t.s.json", ["comment_id", "sentiment"]),
                                        ("t.ms.json", ["comment_id", "sentiment", "labels"])])
def test_target_in_the_file_name(s3: Any, predictor: Any, name: str, keys_: list[str]) -> None:
    doc = [{"comment_id": c, "comment_text": t, "question_type": q} for c, t, q in ROWS]
    s3.put_object(Bucket=BUCKET, Key=f"inbox/{name}", Body=json.dumps(doc).encode())
    assert run(s3, predictor, f"inbox/{name}")["status"] == "done"
    assert all(list(r) == keys_ for r in json.loads(body(s3, f"outbox/{name}")))


def test_r_docs_recipe_json_of_json(s3: Any, predictor: Any) -> None:
    """pxtextmining's docker README R recipe (toJSON of JSON) writes a list of one string."""
    inner = [{"comment_id": "1", "comment_text": "Nurse was great.", "question_type": "what_good"},
             {"comment_id": "2", "comment_text": "", "question_type": "nonspecific"}]
    s3.put_object(Bucket=BUCKET, Key="inbox/r.json",
                  Body=json.dumps([json.dumps(inner, separators=(",", ":"))]).encode())
    assert run(s3, predictor, "inbox/r.json")["status"] == "done"
    results = json.loads(body(s3, "outbox/r.json"))
    assert [r["comment_id"] for r in results] == ["1", "2"]
    assert results[1]["sentiment"] == LABELLING_NOT_POSSIBLE


def test_jsonl_to_outbox(s3: Any, predictor: Any) -> None:
    lines = "".join(json.dumps({"comment_id": c, "comment_text": t}) + "\n" for c, t, _ in ROWS)
    s3.put_object(Bucket=BUCKET, Key="inbox/sub/week 10.jsonl", Body=lines.encode())
    o = run(s3, predictor, "inbox/sub/week 10.jsonl")
    assert o["status"] == "done" and keys(s3) == {"outbox/sub/week 10.jsonl"}
    results = [json.loads(x) for x in body(s3, "outbox/sub/week 10.jsonl").decode().splitlines()]
    assert [r["comment_id"] for r in results] == ["c1", "c2", "c3", "c4"]
    assert results[2]["labels"] == [LABELLING_NOT_POSSIBLE]


def test_url_encoded_key_with_spaces(s3: Any, predictor: Any) -> None:
    key = "inbox/Ward 3 comments (May) + extra.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=csv_bytes())
    event = s3_event(key)
    assert event["Records"][0]["s3"]["object"]["key"] == "inbox/Ward+3+comments+%28May%29+%2B+extra.csv"
    out = process_event(event, predictor, s3=s3, settings=Settings())
    assert out["outcomes"][0]["status"] == "done"
    assert keys(s3) == {"outbox/Ward 3 comments (May) + extra.csv"}


def test_excel_windows_csv(s3: Any, predictor: Any) -> None:
    rows = [("e1", "Caf\u00e9 staff were lovely \u2013 thank you", "what_good")]
    s3.put_object(Bucket=BUCKET, Key="inbox/excel.csv", Body=csv_bytes(rows, "cp1252"))
    assert run(s3, predictor, "inbox/excel.csv")["status"] == "done"


@pytest.mark.parametrize("name,data,reason", [
    ("nocol.csv", b"id,text\n1,hello\n", "lacks column"),
    ("broken.json", b'[{"comment_id": "1", "comment_text": "x"', "not valid JSON"),
    ("object.json", b'{"comment_id": "1"}', "must be a list"),
    ("badline.jsonl", b'{"comment_id": "1", "comment_text": "x"}\nnot json\n', "line 2"),
    ("dups.csv", b"comment_id,comment_text\n7,a\n8,b\n7,c\n", "repeated: '7'"),
    ("noid.json", b'[{"comment_text": "x"}]', "comment_id is missing"),
    ("empty.csv", b"", "empty"),
    ("header_only.csv", b"comment_id,comment_text\n", "no comments"),
    ("report.xlsx", b"PK\x03\x04binary", "unsupported file type"),
    ("binary.csv", b"\x81\x8d\x8f\x90\x9d" * 10, "not UTF-8"),
])
def test_malformed_to_failed_with_report(s3: Any, predictor: Any, name: str, data: bytes,
                                         reason: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"inbox/{name}", Body=data)
    o = run(s3, predictor, f"inbox/{name}")
    assert o["status"] == "failed" and reason in o["detail"]
    assert keys(s3) == {f"failed/{name}", f"failed/{name}.error.json"}
    assert body(s3, f"failed/{name}") == data  # nothing lost
    report = json.loads(body(s3, f"failed/{name}.error.json"))
    assert report["source_key"] == f"inbox/{name}" and reason in report["error"]


def test_too_long_text_and_size_cap(s3: Any, predictor: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="inbox/long.csv", Body=csv_bytes())
    o = run(s3, predictor, "inbox/long.csv", max_text_chars=30)
    assert o["status"] == "failed" and "'c1'" in o["detail"] and "'c3'" not in o["detail"]
    s3.put_object(Bucket=BUCKET, Key="inbox/big.csv", Body=csv_bytes())
    o = run(s3, predictor, "inbox/big.csv", dropfolder_max_bytes=50)
    assert o["status"] == "failed" and "limit is 50 bytes" in o["detail"]
    assert "failed/big.csv.error.json" in keys(s3)


def test_duplicate_event_is_idempotent(s3: Any, predictor: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="inbox/twice.csv", Body=csv_bytes())
    assert run(s3, predictor, "inbox/twice.csv")["status"] == "done"
    first = body(s3, "outbox/twice.csv")
    again = run(s3, predictor, "inbox/twice.csv")
    assert again["status"] == "already_done" and again["result_key"] == "outbox/twice.csv"
    assert keys(s3) == {"outbox/twice.csv"} and body(s3, "outbox/twice.csv") == first
    s3.put_object(Bucket=BUCKET, Key="inbox/bad.txt", Body=b"x")
    assert run(s3, predictor, "inbox/bad.txt")["status"] == "failed"
    assert run(s3, predictor, "inbox/bad.txt")["status"] == "already_done"
    assert run(s3, predictor, "inbox/never-existed.csv")["status"] == "missing"


def test_non_inbox_keys_ignored(s3: Any, predictor: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="outbox/x.csv", Body=b"comment_id,labels\n")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/inbox/y.csv", Body=csv_bytes())
    assert run(s3, predictor, "outbox/x.csv")["status"] == "ignored"
    assert run(s3, predictor, "elsewhere/inbox/y.csv")["status"] == "ignored"
    assert run(s3, predictor, "inbox/")["status"] == "ignored"
    assert keys(s3) == {"outbox/x.csv", "elsewhere/inbox/y.csv"}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}
    assert process_event(test_event, predictor, s3=s3) == {"outcomes": []}


class LambdaContext:
    function_name = "twolane-dropfolder"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:twolane-dropfolder"
    aws_request_id = "3f1e6a3c-0000-4000-8000-000000000002"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_lambda_handler(s3: Any, lambda_module: Callable[[str], ModuleType],
                        capsys: pytest.CaptureFixture[str]) -> None:
    mod = lambda_module("functions.dropfolder.handler")
    s3.put_object(Bucket=BUCKET, Key="inbox/from lambda.csv", Body=csv_bytes())
    out = mod.handler(s3_event("inbox/from lambda.csv"), LambdaContext())
    assert [o["status"] for o in out["outcomes"]] == ["done"]
    assert keys(s3) == {"outbox/from lambda.csv"}
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert any(m.get("CommentsLabelled") == [4.0] or m.get("CommentsLabelled") == 4.0 for m in emf)
