"""A job's record and its parts: what the job store keeps per job (status, locations, counts;
never comment text), the exceptions its transitions raise, and the helpers both the state
machine (`twolane.jobs.machine`) and the persistence (`twolane.jobs.store`) share.

Records are stored as JSON; every field added since the first records has a default, and a
record written before a change still loads (the local stack keeps them across restarts).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from twolane.contract import FileFamily, JobStatus

JobKind = Literal["classify", "summary"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "collected"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_REASON_CHARS = 500
JSONObject = dict[str, Any]  # one JSON object as json.loads gives it (a result row, a message)
OLD_SUMMARY_TARGET = "summary"  # what summary records written before typed jobs hold as target


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Delivery(BaseModel):
    """Where a drop-folder job's results go once the batch lane has them: `result_key` in the
    input's format (`family`; pxtextmining's data_out when `pxtextmining`), or a report at
    `report_key` when the job fails. Keys only, never text."""

    bucket: str
    source_key: str
    result_key: str
    report_key: str
    family: FileFamily
    pxtextmining: bool = False


ShardStatus = Literal["pending", "succeeded", "failed"]


class Shard(BaseModel):
    """One async invocation of a job split into shards: items `start` to `end` (0-based,
    end exclusive) of the job's input, and where SageMaker reads and writes them."""

    index: int
    start: int
    end: int
    inference_id: str
    input_location: str
    output_location: str | None = None
    failure_location: str | None = None
    status: ShardStatus = "pending"
    error: str | None = None
    # What the part is in the job's own terms, when not a range of items (a summary job's
    # part: one theme's LLM request, e.g. "theme 'Staff' (summary)"); no comment text.
    unit: str | None = None

    def describe(self) -> str:
        """The part in the job's own unit: `unit` when set, else e.g. "shard 3 (items
        10000-14999)" (1-based item numbers, inclusive)."""
        return self.unit or f"shard {self.index} (items {self.start + 1}-{self.end})"


class CascadePart(BaseModel):
    """A `"lane": "auto"` job (the cascade): the instant lane's results for the comments it kept,
    stored at `kept_location` when the job was made ({"model_version", "results"}, no text), and
    the positions (0-based, in input order) of the comments sent to the batch lane, whose results
    the job's inference gives in that order. Collection merges both in input order, each result
    with its `lane`."""

    kept_location: str
    escalated: list[int] = Field(default_factory=list)
    instant_version: str


class JobRecord(BaseModel):
    """What the store knows of one job. Holds counts and locations, never comment text."""

    job_id: str
    kind: JobKind = "classify"
    target: str | None = None  # a classify job's "m", "s" or "ms"; None for a summary job
    status: JobStatus = "pending"
    items: int
    input_location: str
    output_location: str | None = None
    failure_location: str | None = None
    error: str | None = None
    endpoint: str | None = None
    owner: str | None = None  # who made it (a key hash or client name, never a key); see collect
    created_at: str
    updated_at: str
    # Accepted while the batch model was unavailable (local stack, model still building): the
    # inference starts when the lane can take it (see JobService.start_deferred).
    deferred: bool = False
    # Positions of blank texts (missing, null, NaN, whitespace), kept for pxtextmining's shapes
    # (sentiment "Labelling not possible" exactly there). Positions only, never text.
    blank_rows: list[int] = Field(default_factory=list)
    delivery: Delivery | None = None  # drop-folder jobs: results go to the outbox, not to a GET
    # A job split into shards (more items than the shard size): one entry per invocation, in
    # input order. Empty for a job of one shard (the locations above are then its own).
    shards: list[Shard] = Field(default_factory=list)
    cascade: CascadePart | None = None  # "lane": "auto" jobs: what the instant lane kept

    @model_validator(mode="before")
    @classmethod
    def _old_summary_target(cls, data: Any) -> Any:
        """Records written before summaries had no target stored "summary" there: read as None."""
        if isinstance(data, dict) and data.get("target") == OLD_SUMMARY_TARGET:
            return {**data, "target": None}
        return data

    def shard_done(self) -> float:
        """Fraction of the job's shards that have predictions (0.0 to 1.0)."""
        if self.status in ("succeeded", "collected"):
            return 1.0
        if not self.shards:
            return 0.0
        return sum(s.status == "succeeded" for s in self.shards) / len(self.shards)

    def input_locations(self) -> list[str]:
        """Every object of this job that holds comment text: its input (a summary job's plan)
        and each shard's input."""
        return [self.input_location, *(sh.input_location for sh in self.shards)]

    def object_locations(self) -> list[str]:
        """Every object this job may own (input, output, failure; each shard's too)."""
        uris = [self.input_location, self.output_location, self.failure_location]
        if self.cascade is not None:
            uris.append(self.cascade.kept_location)
        for sh in self.shards:
            uris += [sh.input_location, sh.output_location, sh.failure_location]
        return [u for u in uris if u]


class JobNotFound(KeyError):
    """No job has this id."""


class JobGone(Exception):
    """The job's results were handed out already and deleted."""


class Conflict(Exception):
    """A conditional write lost a race (HTTP 412/409); re-read and try again."""




def reason_from_failure_body(body: bytes) -> str:
    """The error a container wrote to the failure location, as one short line."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("error") or data.get("detail") or data.get("message") or text)
    except ValueError:
        pass
    return (text or "the model failed without a message")[:MAX_REASON_CHARS]
