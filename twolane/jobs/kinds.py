"""The kinds of batch-lane job, one type each: what a job of that kind is served by, how it is
split into parts, which of its objects it needs until collected, and how its results are put
together from the stored outputs. Everything that differs between kinds is here; the state
machine (`twolane.jobs.machine`), the service, the invokers and the routers ask the job's
kind (`kind_of`) and never compare kind names.

* `ClassifyKind` ("classify"): labels per comment. A big job is split into shards of items
  (`split`), whose outputs ({"model_version", "target", "results"}) are concatenated in
  input order; a cascade job's kept instant-lane results are merged back in (`merge_cascade`).
  Its answer is a `JobResults`.
* `SummaryKind` ("summary"): one LLM request per theme (the parts are given at submission);
  the job's input is the plan, kept until collection, when it and the completions make the
  answer, a `SummaryResults` (`twolane.summaries.plan.assemble`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, NotRequired, TypedDict, cast

from pydantic import BaseModel

from twolane.contract import JobResults, JobTarget, Prediction
from twolane.jobs.record import CascadePart, JobKind, JobRecord, JSONObject
from twolane.settings import BatchSettings
from twolane.summaries.plan import Plan, assemble
from twolane.summaries.schemas import SummaryResults

Tone = Callable[[str], int | None]  # a text's sentiment score (twolane.summaries.plan.judge_with)
Read = Callable[[str], bytes | None]  # an object's body by s3:// URI, None when absent
Part = tuple[int, int, JSONObject]  # one shard of a job: first item, end (exclusive), its body


class ClassifyPayload(TypedDict):
    """A classify job's results as stored by the batch host (and merged by the cascade)."""

    model_version: str
    target: JobTarget
    results: list[JSONObject]  # one Prediction per comment, in input order
    instant_version: NotRequired[str]  # cascade jobs: the instant bundle's version


class SummaryPayload(TypedDict):
    """A summary job's stored parts: its plan and each LLM request's completion, in order (None
    where the request failed or its answer is not JSON; `errors` its one-line reason)."""

    plan: JSONObject
    completions: list[JSONObject | None]
    errors: NotRequired[list[str | None]]


Payload = ClassifyPayload | SummaryPayload


class Unreadable(Exception):
    """A finished job's stored results cannot be made into its answer; `reason` is safe to
    show to the client (no text of the results)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Kind(ABC):
    """What one kind of job does differently. Stateless: one instance per kind (`KINDS`)."""

    name: ClassVar[JobKind]
    uses_llm: ClassVar[bool]  # served by the text-generation endpoint, not the batch model
    labels_comments: ClassVar[bool]  # its results are one Prediction per comment
    keeps_input: ClassVar[bool]  # its own input is read at collection (kept until then)

    @abstractmethod
    def endpoint(self, batch: BatchSettings) -> str:
        """The name of the endpoint that serves this kind."""

    def split(self, body: JSONObject, size: int) -> list[Part] | None:
        """A job given as one request body, in shards of at most `size` items: each shard's
        (start, end, body), in input order (0-based, end exclusive); None when it is one
        invocation."""
        return None

    def needed_inputs(self, record: JobRecord) -> list[str]:
        """The objects a pending job still needs to finish: each pending part's input (the
        job's own input when it has no parts), and the job's input when `keeps_input`."""
        if not record.shards:
            return [record.input_location]
        uris = [sh.input_location for sh in record.shards if sh.status == "pending"]
        return [record.input_location, *uris] if self.keeps_input else uris

    @abstractmethod
    def assemble(self, record: JobRecord, read: Read) -> Payload | None:
        """A succeeded job's results payload from its stored outputs; None when one is missing
        or unreadable (collect then reports the results as not found, once)."""

    # True: a failed part is that part's answer withheld, not a failed job (the job ends when
    # no part is pending); False: the job fails with its first failed part
    parts_fail_alone: ClassVar[bool] = False

    @abstractmethod
    def answer(self, record: JobRecord, payload: Payload, tone: Tone | None = None) -> BaseModel:
        """The client's 200 body for a collected job's payload; `tone` (a text's sentiment score
        on the instant lane, twolane.summaries.plan.judge_with) for kinds that check prose.
        Raises Unreadable."""


class ClassifyKind(Kind):
    name = "classify"
    uses_llm = False
    labels_comments = True
    keeps_input = False

    def endpoint(self, batch: BatchSettings) -> str:
        return batch.endpoint

    def split(self, body: JSONObject, size: int) -> list[Part] | None:
        """Shards of `body["items"]` (the rest of the body repeated in each)."""
        items = body.get("items")
        if not isinstance(items, list) or len(items) <= size:
            return None
        return [(start, min(start + size, len(items)), {**body, "items": items[start:start + size]})
                for start in range(0, len(items), size)]

    @staticmethod
    def kept_only(results: list[JSONObject], instant_version: str, target: str) -> ClassifyPayload:
        """A cascade job that escalated nothing: the instant lane's results (in input order) as
        the job's payload, as `merge_cascade` makes it with no batch results."""
        part = CascadePart(kept_location="", escalated=[], instant_version=instant_version)
        return merge_cascade(part, {"results": results}, cast(ClassifyPayload, {
            "model_version": instant_version, "target": target, "results": []}))

    def assemble(self, record: JobRecord, read: Read) -> ClassifyPayload | None:
        """The inference's payload (a sharded job's shards' `results` concatenated in input
        order); for a cascade job (`record.cascade`) the kept and escalated results merged in
        input order, each with its `lane`."""
        payload = self._inference(record, read)
        if payload is None or record.cascade is None:
            return payload
        kept_body = read(record.cascade.kept_location)
        if kept_body is None:
            return None
        try:
            return merge_cascade(record.cascade, json.loads(kept_body), payload)
        except ValueError:
            return None

    @staticmethod
    def _inference(record: JobRecord, read: Read) -> ClassifyPayload | None:
        locations = [sh.output_location for sh in record.shards] or [record.output_location]
        payload: ClassifyPayload | None = None
        for uri in locations:
            body = read(uri or "")
            if body is None:
                return None
            part = cast(ClassifyPayload, json.loads(body))
            if payload is None:
                payload = cast(ClassifyPayload, {**part, "results": list(part.get("results", []))})
            else:
                payload["results"].extend(part.get("results", []))
        return payload

    def predictions(self, payload: Payload) -> list[Prediction]:
        """The payload's results as Predictions, in input order."""
        return [Prediction.model_validate(r) for r in cast(ClassifyPayload, payload)["results"]]

    def answer(self, record: JobRecord, payload: Payload, tone: Tone | None = None) -> JobResults:
        p = cast(ClassifyPayload, payload)
        return JobResults(job_id=record.job_id, model_version=p["model_version"], target=p["target"],
                          results=self.predictions(p))


class SummaryKind(Kind):
    name = "summary"
    uses_llm = True
    labels_comments = False
    keeps_input = True  # the plan: read at collection

    def endpoint(self, batch: BatchSettings) -> str:
        return batch.summary_endpoint

    parts_fail_alone = True  # a theme whose LLM request failed is withheld, not the report

    @staticmethod
    def units(plan: Plan) -> list[str]:
        """Each LLM request of a plan (one shard each) in the job's own terms, in request
        order: e.g. "theme 'Staff' (summary)" (what a failed request's error names; label
        names, no text)."""
        units = {tp.summary_shard: f"theme {tp.theme!r} (summary)" for tp in plan.themes
                 if tp.summary_shard is not None}
        return [units[i] for i in sorted(units)]

    def assemble(self, record: JobRecord, read: Read) -> SummaryPayload | None:
        """{"plan", "completions", "errors"}: the plan (the job's input), each theme's
        completion (None: its request failed or answered nonsense) and each failed request's
        reason (a job with no LLM request was stored done with the plan alone)."""
        if not record.shards:
            body = read(record.output_location or "")
            return None if body is None else cast(SummaryPayload, json.loads(body))
        plan = read(record.input_location)
        parts = [read(sh.output_location or "") if sh.status == "succeeded" else None for sh in record.shards]
        if plan is None or any(p is None for p, sh in zip(parts, record.shards, strict=True)
                               if sh.status == "succeeded"):
            return None
        return {"plan": json.loads(plan), "completions": [_json_or_none(p) for p in parts],
                "errors": [sh.error or ("inference failed" if sh.status == "failed" else None)
                           for sh in record.shards]}

    def answer(self, record: JobRecord, payload: Payload, tone: Tone | None = None) -> SummaryResults:
        p = cast(SummaryPayload, payload)
        plan = Plan.model_validate(p["plan"])
        themes = assemble(plan, p["completions"], p.get("errors") or (), tone)  # never raises
        return SummaryResults(job_id=record.job_id, model_version=plan.model_version, llm=plan.llm,
                              points_by=plan.points_by, themes=themes)


def _json_or_none(body: bytes | None) -> JSONObject | None:
    """A stored completion, or None when there is none or it is not JSON (nonsense)."""
    if body is None:
        return None
    try:
        return cast(JSONObject, json.loads(body))
    except ValueError:
        return None


CLASSIFY = ClassifyKind()
SUMMARY = SummaryKind()
KINDS: dict[JobKind, Kind] = {k.name: k for k in (CLASSIFY, SUMMARY)}


def kind_of(record: JobRecord) -> Kind:
    """The record's kind."""
    return KINDS[record.kind]


def merge_cascade(part: CascadePart, kept: JSONObject, batch: ClassifyPayload) -> ClassifyPayload:
    """One payload from a cascade job's kept results ({"results": [...]} in input order, the
    escalated positions left out) and its batch inference's ({"model_version", "target",
    "results"}, one per escalated position, in order): every result in input order with
    `"lane": "instant"` or `"batch"`. Raises ValueError when the counts do not add up."""
    kept_rows, batch_rows = list(kept.get("results", [])), list(batch.get("results", []))
    if len(batch_rows) != len(part.escalated):
        raise ValueError(f"{len(batch_rows)} batch results for {len(part.escalated)} escalated comments")
    n = len(kept_rows) + len(batch_rows)
    escalated = set(part.escalated)
    out: list[JSONObject] = []
    k = b = 0
    for i in range(n):
        if i in escalated:
            out.append({**batch_rows[b], "lane": "batch"})
            b += 1
        else:
            out.append({**kept_rows[k], "lane": "instant"})
            k += 1
    return {**batch, "results": out, "instant_version": part.instant_version}
