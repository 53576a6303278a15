"""The request and response shapes both lanes speak (pydantic), independent of any model.

Path of a request: handler (FastAPI router / Lambda / container) -> contract (these models)
-> predictor (ONNX).

The input boundary is here, once, for every entry point (the API, the drop folder, jobs and
the batch host): an incoming comment is a `CommentIn` (strict: the JSON API) or a `PxItemIn`
(lenient: pxtextmining's item lists, and every drop-folder file row); both check the id the
same way (`CommentId`: 1 to MAX_ID_CHARS characters, not blank, kept as sent, valid Unicode)
and clean the text (`CommentText`). `check_items` checks a whole list against the limits the
caller's settings give (count, text length) and for duplicate ids; each entry point answers its
`ItemsRejected` in its own way (a 413/422, a file in failed/, the container's 422).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from twolane.rules import (
    MAX_CONTEXT_CHARS,
    SENTIMENT_NAMES,
    QuestionType,
    clean_text,
    is_clean,
    question_type_of,
)

__all__ = ["SENTIMENT_NAMES", "QuestionType"]  # re-exported: the rule book defines them


MAX_ID_CHARS = 256  # characters in a comment_id
MAX_IDS_NAMED = 20  # a reason names at most this many comment ids


def _clean_id(value: str) -> str:
    if not is_clean(value):
        raise ValueError("must be valid Unicode text (it holds a lone surrogate or NUL)")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _nan_as_null(name: str) -> Any:
    if name == "NaN":
        return None
    return _reject_constant(name)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object, refused when it holds a key twice (json.loads would keep the last silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise json.JSONDecodeError("an object holds the same key twice", "", 0)
    return out


def strict_json_loads(data: bytes | str, nan_as_null: bool = False) -> Any:
    """JSON as every entry point reads it: json.loads, except that NaN, Infinity, a key twice in
    one object, a number over Python's digit limit and nesting past the recursion limit raise
    json.JSONDecodeError too (Python's own reader accepts the first three and raises other
    errors for the rest).

    nan_as_null: NaN reads as null (pxtextmining's data_in files, written by pandas, hold NaN for
    a missing text); Infinity is still refused."""
    try:
        return json.loads(data, parse_constant=_nan_as_null if nan_as_null else _reject_constant,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if "not allowed in JSON" in str(exc) else "a number or nesting too large to read"
        raise json.JSONDecodeError(reason, "", 0) from None


# The input boundary (twolane.rules.clean_text): every comment that enters through these models
# (API, drop folder, jobs, the batch container) has its text cleaned and its id checked here.
CommentText = Annotated[str, AfterValidator(clean_text)]
# An id is kept as sent (" 7 " stays " 7 ": results map back to their rows exactly).
CommentId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_clean_id)]
# A team's own context value (a bundle with a context column, docs/own_data.md); NHS bundles
# read question_type instead and ignore it.
ContextValue = Annotated[str, Field(max_length=MAX_CONTEXT_CHARS), AfterValidator(clean_text)]


class CommentIn(BaseModel):
    """One comment to label. `comment_text` may be empty or null: it gets 'Labelling not possible'."""

    model_config = ConfigDict(extra="forbid")

    comment_id: CommentId
    comment_text: CommentText | None = None
    question_type: QuestionType | None = None
    # left out of dumps when None: payloads for NHS bundles stay exactly as they were
    context: ContextValue | None = Field(default=None, exclude_if=lambda v: v is None)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # minItems: the schema says what the 422 for [] says (the reason comes from check_items)
    items: list[CommentIn] = Field(..., json_schema_extra={"minItems": 1})
    include_probabilities: StrictBool = False  # true or false only: "yes" or 1 is a 422


class Sentiment(BaseModel):
    # 1-based position in the bundle's sentiment classes (NHS: 1 very positive .. 5 very negative)
    score: int = Field(..., ge=1)
    label: str


Lane = Literal["instant", "batch"]  # the lane that answered one comment


class Prediction(BaseModel):
    """What a predictor says of one comment. Never holds the comment text."""

    comment_id: str
    labels: list[str]
    sentiment: Sentiment | None = None  # None when labelling is not possible
    probabilities: dict[str, float] | None = None  # per label, only on request
    # which lane answered, in a "lane": "auto" job's results only (absent everywhere else)
    lane: Lane | None = Field(default=None, exclude_if=lambda v: v is None)


def restrict(prediction: Prediction, target: str) -> Prediction:
    """A prediction cut to a job target: "m" drops sentiment, "s" drops labels, "ms" keeps both."""
    if target == "m" and prediction.sentiment is not None:
        return prediction.model_copy(update={"sentiment": None})
    if target == "s" and prediction.labels:
        return prediction.model_copy(update={"labels": []})
    return prediction


class PredictResponse(BaseModel):
    model_version: str
    results: list[Prediction]


# pxtextmining's item, as its quick API, slow API and docker data_in files send it. Lenient the
# way its clients need: extra keys ignored, numbers read as strings (1 -> "1"), a missing, null
# or NaN text is blank (it gets "Labelling not possible"), any question type spelling is read by
# the rule book (unknown -> nonspecific). See docs/pxtextmining.md.
def _px_id(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("comment_id must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("comment_id must be a string or a finite number")
    return str(value)


def _px_text(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("comment_text must be text (or null)")
    return str(value)


def _px_question_type(value: object) -> object:
    return None if value is None else question_type_of(value)


class PxItemIn(BaseModel):
    """One pxtextmining comment: {comment_id, comment_text?, question_type?}, extra keys ignored."""

    model_config = ConfigDict(extra="ignore")

    comment_id: Annotated[CommentId, BeforeValidator(_px_id)]
    comment_text: Annotated[CommentText | None, BeforeValidator(_px_text)] = None
    question_type: Annotated[QuestionType | None, BeforeValidator(_px_question_type)] = None
    context: Annotated[ContextValue | None, BeforeValidator(_px_text)] = None

    def comment(self) -> CommentIn:
        return CommentIn(comment_id=self.comment_id, comment_text=self.comment_text,
                         question_type=self.question_type, context=self.context)


class Item(Protocol):
    """What `check_items` reads of an item (CommentIn and PxItemIn both have it)."""

    @property
    def comment_id(self) -> str: ...

    @property
    def comment_text(self) -> str | None: ...


class ItemsRejected(ValueError):
    """A list of comments that may not be labelled as it is: `status` 413 (too many) or 422,
    a `reason` safe to show (it names ids, never text) and the `ids` at fault (maybe none)."""

    def __init__(self, status: int, reason: str, ids: Sequence[str] = ()):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.ids = list(ids)


def named_ids(ids: Sequence[str]) -> str:
    """Ids for a reason: repr'd, at most MAX_IDS_NAMED, then "and N more"."""
    more = len(ids) - MAX_IDS_NAMED
    return ", ".join(repr(i) for i in ids[:MAX_IDS_NAMED]) + (f" and {more} more" if more > 0 else "")


def check_items(items: Sequence[Item], *, max_items: int | None = None,
                max_text_chars: int | None = None) -> None:
    """Raise ItemsRejected unless the items may be labelled together: at least one (422), at
    most `max_items` (413), ids unique (422), no text over `max_text_chars` characters (422).
    A limit of None is not checked. Every entry point calls this, with its settings' limits."""
    if not items:
        raise ItemsRejected(422, "no comments: send at least one item")
    if max_items is not None and len(items) > max_items:
        raise ItemsRejected(413, f"{len(items)} items in one request; the limit is {max_items}. "
                                 "Split the request, or use the drop folder for large files.")
    dups = [i for i, n in Counter(i.comment_id for i in items).items() if n > 1]
    if dups:
        raise ItemsRejected(422, f"comment_id must be unique; repeated: {named_ids(dups)}", dups)
    if max_text_chars is not None:
        too_long = [i.comment_id for i in items if len(i.comment_text or "") > max_text_chars]
        if too_long:
            raise ItemsRejected(422, f"comment_text longer than {max_text_chars} characters for "
                                     f"comment_id {named_ids(too_long)}", too_long)


class PxItemOut(BaseModel):
    """The quick API's answer for one comment: exactly pxtextmining's {comment_id, labels}."""

    comment_id: str
    labels: list[str]


# Batch lane jobs.
FileFamily = Literal["csv", "json", "jsonl"]  # a drop-folder file's format family (in and out)
JobTarget = Literal["m", "s", "ms"]  # multilabel, sentiment, both (pxtextmining slow API)
JobLane = Literal["batch", "auto"]  # what a job asks for: the batch lane, or the cascade
JobStatus = Literal["pending", "running", "succeeded", "failed", "collected"]


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CommentIn]
    target: JobTarget = "ms"
    # "batch": every comment to the transformer ensemble; "auto": the cascade (the instant lane
    # keeps the comments it is sure of, the rest go to the batch lane; each result names its lane)
    lane: JobLane = "batch"


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    results_url: str


class JobState(BaseModel):
    job_id: str
    status: JobStatus
    items: int
    progress: float = 0.0  # 0..1
    error: str | None = None
    created_at: str
    updated_at: str


class JobResults(BaseModel):
    job_id: str
    model_version: str
    target: JobTarget
    results: list[Prediction]
