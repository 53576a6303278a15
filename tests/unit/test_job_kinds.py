"""Typed jobs: each kind (classify, summary) knows its endpoint, its shards, the inputs it keeps
and how its results are assembled; nothing else compares kind names; records written before
the kinds had types (a summary's `target` was "summary") still load and are handed out.

The store tests run the real S3 store against moto's S3 server."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server

from twolane.jobs.kinds import CLASSIFY, KINDS, SUMMARY, kind_of, merge_cascade
from twolane.jobs.record import CascadePart, JobRecord, Shard, now_iso
from twolane.jobs.store import S3JobStore
from twolane.layout import job_record_key, parse_s3_uri
from twolane.settings import Settings
from twolane.summaries.schemas import SummaryResults

ROOT = Path(__file__).resolve().parents[2]
JOB = "ab" * 16


def record(**kw: Any) -> JobRecord:
    base: dict[str, Any] = {"job_id": JOB, "target": "ms", "items": 3,
                            "input_location": "s3://b/batch/input/j.json",
                            "created_at": now_iso(), "updated_at": now_iso()}
    return JobRecord.model_validate({**base, **kw})


def shard(n: int, **kw: Any) -> Shard:
    return Shard.model_validate({"index": n, "start": n, "end": n + 1, "inference_id": f"{JOB}-{n}",
                                 "input_location": f"s3://b/batch/input/j/{n}.json",
                                 "output_location": f"s3://b/batch/output/j-{n}.out", **kw})


def test_each_kind_names_its_endpoint() -> None:
    batch = Settings(bucket="b").batch
    assert CLASSIFY.endpoint(batch) == batch.endpoint
    assert SUMMARY.endpoint(batch) == batch.summary_endpoint
    assert {k.name for k in KINDS.values()} == {"classify", "summary"}


def test_classify_jobs_split_into_item_ranges_summaries_never() -> None:
    body = {"items": [{"comment_id": str(i)} for i in range(7)], "target": "m"}
    assert CLASSIFY.split(body, 7) is None
    parts = CLASSIFY.split(body, 3)
    assert parts is not None and [(a, b) for a, b, _ in parts] == [(0, 3), (3, 6), (6, 7)]
    assert [[i["comment_id"] for i in p["items"]] for _, _, p in parts] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert all(p["target"] == "m" for _, _, p in parts)
    assert SUMMARY.split(body, 3) is None  # its parts (one per LLM request) are given


def test_a_cascade_that_escalated_nothing_is_its_kept_results() -> None:
    payload = CLASSIFY.kept_only([{"comment_id": "a"}], "i1", "ms")
    assert payload == {"model_version": "i1", "target": "ms", "instant_version": "i1",
                       "results": [{"comment_id": "a", "lane": "instant"}]}


def test_a_summary_keeps_its_plan_until_collected() -> None:
    parts = [shard(0, status="succeeded"), shard(1)]
    classify, summary = record(shards=parts), record(kind="summary", target=None, shards=parts)
    assert kind_of(classify).needed_inputs(classify) == [parts[1].input_location]
    assert kind_of(summary).needed_inputs(summary) == [summary.input_location, parts[1].input_location]
    assert kind_of(record()).needed_inputs(record()) == [record().input_location]


def test_classify_results_are_the_shards_in_input_order() -> None:
    parts = [shard(0), shard(1)]
    bodies = {parts[0].output_location: {"model_version": "v", "target": "ms", "results": [{"comment_id": "1"}]},
              parts[1].output_location: {"model_version": "v", "target": "ms", "results": [{"comment_id": "2"}]}}
    rec = record(shards=parts, status="succeeded")

    def read(uri: str) -> bytes | None:
        return json.dumps(bodies[uri]).encode() if uri in bodies else None

    payload = CLASSIFY.assemble(rec, read)
    assert payload is not None and [r["comment_id"] for r in payload["results"]] == ["1", "2"]
    del bodies[parts[1].output_location]
    assert CLASSIFY.assemble(rec, read) is None  # an output gone: no partial results


def test_cascade_merge_puts_each_result_back_in_its_place() -> None:
    part = CascadePart(kept_location="s3://b/k", escalated=[1], instant_version="i1")
    merged = merge_cascade(part, {"results": [{"comment_id": "a"}, {"comment_id": "c"}]},
                           {"model_version": "b1", "target": "ms", "results": [{"comment_id": "b"}]})
    assert [(r["comment_id"], r["lane"]) for r in merged["results"]] == [
        ("a", "instant"), ("b", "batch"), ("c", "instant")]
    assert merged["instant_version"] == "i1"
    with pytest.raises(ValueError, match="escalated"):
        merge_cascade(part, {"results": []}, {"model_version": "b1", "target": "ms", "results": []})


def test_an_unreadable_llm_answer_is_that_themes_summary_withheld() -> None:
    """A completion that is not a chat completion withholds that theme's summary (the report
    still comes, with a reason that holds none of the answer)."""
    plan = {"model_version": "v", "llm": "m", "points_by": "words",
            "themes": [{"theme": "Staff", "comments": 1, "negative": 0, "points": [], "words": [],
                        "summary_shard": 0}]}
    rec = record(kind="summary", target=None)
    answer = SUMMARY.answer(rec, {"plan": plan, "completions": [{"not": "a chat completion"}]})
    assert isinstance(answer, SummaryResults)
    (theme,) = answer.themes
    assert theme.summary is None and theme.withheld and "not a chat completion" not in theme.withheld


def test_summary_units_name_each_request_by_theme() -> None:
    from twolane.summaries.plan import Plan

    plan = Plan.model_validate({"model_version": "v", "llm": "m", "points_by": "words", "themes": [
        {"theme": "Staff", "comments": 2, "negative": 1, "points": [], "words": [], "summary_shard": 1},
        {"theme": "Food", "comments": 1, "negative": 0, "points": [], "words": [], "summary_shard": 0},
        {"theme": "Quiet", "comments": 0, "negative": 0, "points": [], "words": []}]})
    assert SUMMARY.units(plan) == ["theme 'Food' (summary)", "theme 'Staff' (summary)"]


# --- records written before the kinds had types -----------------------------------------------


def test_old_records_load_as_before() -> None:
    old_summary = {"job_id": JOB, "kind": "summary", "target": "summary", "status": "pending",
                   "items": 4, "input_location": "s3://b/batch/input/j.json",
                   "created_at": "2026-12-01T10:00:00.000+00:00",
                   "updated_at": "2026-12-01T10:00:00.000+00:00",
                   "shards": [{"index": 0, "start": 0, "end": 4, "inference_id": f"{JOB}-0",
                               "input_location": "s3://b/batch/input/j/0.json",
                               "unit": "theme 'Staff' (summary)"}]}
    rec = JobRecord.model_validate_json(json.dumps(old_summary))
    assert (rec.kind, rec.target, rec.shards[0].describe()) == ("summary", None, "theme 'Staff' (summary)")
    older = {k: v for k, v in old_summary.items() if k not in ("kind", "shards")} | {"target": "ms"}
    rec = JobRecord.model_validate_json(json.dumps(older))  # before summaries: no kind stored
    assert (rec.kind, rec.target) == ("classify", "ms")


@pytest.fixture(scope="module")
def moto() -> Any:
    with moto_server() as endpoint:
        yield endpoint


def test_an_old_summary_record_in_the_bucket_is_handed_out_once(moto: str, tmp_path: Path) -> None:
    from twolane.aws import client

    settings = lane_settings(tmp_path, tmp_path / "bundles")
    bucket_ready(settings)
    s3 = client("s3")
    store = S3JobStore(s3, settings.bucket)
    out = store.output_location(JOB)
    plan = {"model_version": "v", "llm": "m", "points_by": "words", "themes": []}
    old = {"job_id": JOB, "kind": "summary", "target": "summary", "status": "succeeded", "items": 2,
           "input_location": store.input_location(JOB), "output_location": out,
           "endpoint": "instant", "created_at": now_iso(), "updated_at": now_iso()}
    bucket, key = parse_s3_uri(out)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"plan": plan, "completions": []}).encode())
    s3.put_object(Bucket=settings.bucket, Key=job_record_key(JOB), Body=json.dumps(old).encode())

    got = store.collect(JOB)
    assert got.payload is not None
    stored = store.get(JOB)
    assert stored is not None and stored.status == "collected"
    answer = kind_of(got.record).answer(got.record, got.payload)
    assert isinstance(answer, SummaryResults) and answer.themes == [] and answer.job_id == JOB
    assert store.read(out) is None  # handed out once: the output is gone


# --- no kind compared outside the kinds ---------------------------------------------------------


def _kind_comparisons(path: Path) -> list[int]:
    """Lines of `path` that compare something named `kind` with a job kind's name."""
    names = set(KINDS)
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        named_kind = any((isinstance(s, ast.Name) and s.id == "kind")
                         or (isinstance(s, ast.Attribute) and s.attr == "kind") for s in sides)
        job_kind = any(isinstance(s, ast.Constant) and s.value in names for s in sides)
        if named_kind and job_kind:
            lines.append(node.lineno)
    return lines


def test_only_the_kinds_compare_job_kinds() -> None:
    kinds_module = ROOT / "twolane" / "jobs" / "kinds.py"
    found = {f"{p.relative_to(ROOT)}:{n}" for folder in ("twolane", "local_stack", "functions")
             for p in sorted((ROOT / folder).rglob("*.py")) if p != kinds_module
             for n in _kind_comparisons(p)}
    assert not found, f"job kinds compared outside twolane/jobs/kinds.py: {sorted(found)}"
