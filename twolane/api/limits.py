"""Request limits that depend on settings: checked before any prediction is made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from twolane.api.errors import RequestRejected

MAX_IDS_NAMED = 20  # a reason names at most this many comment ids


def _named(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_IDS_NAMED])
    more = len(ids) - MAX_IDS_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def check_items(ids: Sequence[str], texts: Sequence[str | None], max_items: int,
                max_text_chars: int) -> None:
    """Raise RequestRejected (413 or 422, with a reason) unless the items may be labelled."""
    if not ids:
        raise RequestRejected(422, "no comments: send at least one item")
    if len(ids) > max_items:
        raise RequestRejected(
            413,
            f"{len(ids)} items in one request; the limit is {max_items}. "
            "Split the request, or use the drop folder for large files.",
        )
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise RequestRejected(422, f"comment_id must be unique; repeated: {_named(dups)}", dups)
    too_long = [i for i, t in zip(ids, texts, strict=False) if t is not None and len(t) > max_text_chars]
    if too_long:
        raise RequestRejected(
            422,
            f"comment_text longer than {max_text_chars} characters for comment_id "
            f"{_named(too_long)}",
            too_long,
        )
