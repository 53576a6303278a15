"""pxtextmining compatibility: what its clients send (item lists, `target`) and what they read
back (its quick-API rows and its slow-API / docker `data_out` rows).

Its clients are the quick API (`POST /predict_multilabel`), the slow API (an Azure Function:
`POST /api/StartContainerInstance?code=KEY&target=ms`, then the results URL) and the docker
image (`data_in/X.json` -> `data_out/X.json`, `-t m|s|ms`). docs/pxtextmining.md shows each
flow side by side.

Sentiment in its shapes is a number 1..5 (1 very positive .. 5 very negative) or "Labelling not
possible". pxtextmining gives "Labelling not possible" exactly for blank text (missing, null,
NaN, empty, whitespace); so does this module. A placeholder or content-free answer ("N/A",
"Did not answer", emoji only), which twolane does not label, gets
`rules.CONTENT_FREE_SENTIMENT` (3, neutral or mixed) and labels ["Labelling not possible"].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from twolane.contract import JobTarget, Prediction, PxItemIn, strict_json_loads
from twolane.rules import CONTENT_FREE_SENTIMENT, LABELLING_NOT_POSSIBLE, is_blank

TARGETS: dict[str, JobTarget] = {"m": "m", "s": "s", "ms": "ms", "sm": "ms"}
MAX_REASONS = 5
_ITEMS = TypeAdapter(list[PxItemIn])


class PxShapeError(ValueError):
    """The document is not a pxtextmining item list; the message says where (never the text)."""


def parse_target(value: str | None) -> JobTarget:
    """pxtextmining's `target` / `-t`: "m" labels, "s" sentiment, "ms" (or "sm") both; absent
    or empty means "ms". Raises ValueError for anything else."""
    if value is None or not value.strip():
        return "ms"
    target = TARGETS.get(value.strip().lower())
    if target is None:
        raise ValueError(f"target must be m, s or ms, not {value[:20]!r}")
    return target


def _reasons(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:MAX_REASONS]:
        loc = err.get("loc", ())
        where = f"item {int(loc[0]) + 1}" if loc and isinstance(loc[0], int) else "body"
        field = ".".join(str(x) for x in loc[1:])
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}{': ' + field if field else ''}: {msg}")
    more = exc.error_count() - MAX_REASONS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def unwrap_r_json(doc: Any) -> Any:
    """A list holding one string that is itself a JSON list -> that list (what the R recipe in
    pxtextmining's docker README writes: `toJSON()` applied to JSON again); else `doc`."""
    if isinstance(doc, list) and len(doc) == 1 and isinstance(doc[0], str):
        try:
            inner = strict_json_loads(doc[0], nan_as_null=True)
        except ValueError:
            return doc
        if isinstance(inner, list):
            return inner
    return doc


def read_items(doc: Any) -> list[PxItemIn]:
    """A parsed JSON document -> pxtextmining items, in order.

    Takes a list of {comment_id, comment_text?, question_type?} objects. Also takes a list
    holding one string that is such a list in JSON: what the R recipe in pxtextmining's docker
    README writes (`toJSON()` applied to JSON again). Raises PxShapeError naming the items at
    fault (never their text).
    """
    doc = unwrap_r_json(doc)
    if not isinstance(doc, list):
        raise PxShapeError("expected a JSON list of {comment_id, comment_text, question_type} objects")
    try:
        return _ITEMS.validate_python(doc)
    except ValidationError as exc:
        raise PxShapeError(_reasons(exc)) from None


def blank_rows(items: Sequence[PxItemIn]) -> list[int]:
    """Positions of the items whose text is blank (missing, null, NaN, empty, whitespace)."""
    return [n for n, i in enumerate(items) if is_blank(i.comment_text)]


def sentiment_value(blank: bool, prediction: Prediction) -> int | str:
    """A sentiment in pxtextmining's shape: "Labelling not possible" for blank text, else the
    score (CONTENT_FREE_SENTIMENT where twolane has none: placeholders, emoji only)."""
    if blank:
        return LABELLING_NOT_POSSIBLE
    return prediction.sentiment.score if prediction.sentiment else CONTENT_FREE_SENTIMENT


def result_rows(predictions: Sequence[Prediction], target: JobTarget,
                blank: Sequence[int] = ()) -> list[dict[str, Any]]:
    """pxtextmining's slow-API results / docker data_out rows, in input order, keys in its
    order: comment_id, sentiment ("s", "ms"), labels ("m", "ms"). `blank`: positions of blank
    texts (see `blank_rows`)."""
    blanks = set(blank)
    rows = []
    for n, p in enumerate(predictions):
        row: dict[str, Any] = {"comment_id": p.comment_id}
        if "s" in target:
            row["sentiment"] = sentiment_value(n in blanks, p)
        if "m" in target:
            row["labels"] = [LABELLING_NOT_POSSIBLE] if n in blanks else (
                list(p.labels) or [LABELLING_NOT_POSSIBLE])
        rows.append(row)
    return rows
