"""Read comments from, and write results to, CSV / JSON list / JSONL files.

Input: a `comment_id` and a `comment_text` column (or key), `question_type` optional (any
spelling the rule book reads; unknown ones count as nonspecific). A missing, null, NaN or
blank text is one comment that cannot be labelled, never a failed file. A JSON file is a list
of such objects, as pxtextmining's docker `data_in` (answered in its `data_out` shape, see
`write_px`), or an object with an `items` list. Results hold the id, labels and sentiment,
never the comment text; in a CSV an id that starts like a formula gets a leading "'".
JSONL is one object per line, lines split at "\n" only (U+2028, U+2029, U+0085 may appear inside
strings). JSON is read strictly (`twolane.contract.strict_json_loads`: no Infinity, no numbers or
nesting Python cannot hold), except that NaN in a JSON file reads as null: pxtextmining's data_in
files (written by pandas) hold NaN for a missing text.

Encoding (`decode`): a byte-order mark decides (UTF-8, UTF-16 LE/BE). Without one, the file is
UTF-8 when it all decodes as UTF-8; otherwise each line is read on its own, as UTF-8 when it is
valid UTF-8 and as Windows-1252 (Excel's "CSV" on Windows) when it is not, so one stray
Windows-1252 byte never turns the other rows' curly quotes into mojibake. A line neither can
read, or NUL bytes without a byte-order mark (UTF-16 saved without one), send the file to
failed/ naming the first such line. Error messages name lines, items and ids, never text.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from twolane.contract import (
    CommentIn,
    FileFamily,
    ItemsRejected,
    JobTarget,
    Prediction,
    PxItemIn,
    check_items,
    strict_json_loads,
)
from twolane.pxtextmining import TARGETS, result_rows, unwrap_r_json
from twolane.rules import is_blank

Family = FileFamily  # the contract names the families (a job record carries one)
FAMILIES: dict[str, Family] = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
CONTENT_TYPES: dict[Family, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}
LABEL_SEPARATOR = "; "  # labels in one CSV cell (labels contain commas, never semicolons)
log = logging.getLogger("twolane.dropfolder")


class FormatError(ValueError):
    """The file cannot be read as comments. The message says why (and which rows or ids)."""


def family_of(name: str) -> Family:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FAMILIES:
        raise FormatError(
            f"unsupported file type {suffix or '(none)'!r}: use .csv, .json, .jsonl or .ndjson"
        )
    return FAMILIES[suffix]


def decode(data: bytes) -> str:
    """The file's text by the rule in the module docstring; FormatError names the first line
    that cannot be read."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")  # the BOM gives the byte order; it is dropped
        except UnicodeDecodeError:
            raise FormatError("the file starts as UTF-16 but is not valid UTF-16") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise FormatError(f"line {line}: NUL bytes: the file is UTF-16 without a byte-order mark, "
                          "or not text; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines: list[str] = []
    legacy = 0
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(raw.decode("cp1252"))
                legacy += 1
            except UnicodeDecodeError:
                raise FormatError(f"line {n}: not UTF-8 (or Windows-1252) text") from None
    log.info("read %d of %d lines as Windows-1252", legacy, len(lines))
    return "\n".join(lines)


def _item(row: dict[str, Any], where: str) -> CommentIn:
    """One row (a CSV line as {column: cell}, or a JSON object) read as the contract reads a
    pxtextmining item (`contract.PxItemIn`: the rules live there); FormatError names the
    row and field."""
    try:
        return PxItemIn.model_validate(row).comment()
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        if first["type"] == "missing":
            raise FormatError(f"{where}: {field} is missing") from None
        raise FormatError(f"{where}: {field}: {first['msg'].removeprefix('Value error, ')}") from None


def _looks_like_row(line: str, width: int) -> bool:
    """True when a line inside a quoted cell reads as a row of its own: `width` cells, the
    first an id (no spaces, at most 64 characters). A comment that merely spans lines does not."""
    cells = next(csv.reader([line]), [])
    first = cells[0].strip() if cells else ""
    return len(cells) == width and bool(first) and " " not in first and len(first) <= 64


def _read_csv(text: str) -> list[CommentIn]:
    """Comments in a CSV, read strictly: an unbalanced quote, a column named twice, a row with
    more cells than the header, or rows folded into one quoted cell (a quote opened and closed
    lines later, every line between reading as a row of its own) is a FormatError naming the
    line, never a file with rows silently lost."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FormatError("the file is empty") from None
    except csv.Error as exc:
        raise FormatError(f"line {reader.line_num}: not a readable CSV: {exc}") from None
    cols = [h.strip().lower().replace(" ", "_") for h in header]
    missing = [c for c in ("comment_id", "comment_text") if c not in cols]
    if missing:  # the first line is not echoed: without a header it is a comment
        raise FormatError(f"CSV header lacks column(s) {missing}: the first line must name the "
                          f"columns (comment_id, comment_text, question_type optional)")
    twice = sorted(c for c, n in Counter(c for c in cols if c).items() if n > 1)
    if twice:
        raise FormatError(f"line 1: column(s) named more than once: {twice}")
    items: list[CommentIn] = []
    n = reader.line_num + 1  # the line the next row starts on
    try:
        for row in reader:
            first, n = n, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) > len(cols):
                raise FormatError(f"line {first}: {len(row)} fields but the header has {len(cols)}")
            for cell in row:
                inner = cell.split("\n")[1:]
                if inner and all(_looks_like_row(line, len(cols)) for line in inner):
                    raise FormatError(
                        f"line {first}: a quote opened here is closed on line {n - 1}, and the "
                        "lines between read as rows of their own: check the quotes on line "
                        f"{first}")
            items.append(_item(dict(zip(cols, row, strict=False)), f"line {first}"))
    except csv.Error as exc:
        raise FormatError(f"line {n}: an unbalanced quote or a stray character after one "
                          f"({exc}): check the quotes from line {n}") from None
    return items


def _objects(rows: Iterable[Any], what: str) -> list[CommentIn]:
    items: list[CommentIn] = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise FormatError(f"{what} {n}: expected an object with comment_id and comment_text")
        items.append(_item(row, f"{what} {n}"))
    return items


def _read_json(text: str) -> tuple[list[CommentIn], bool]:
    """The comments, and whether the file is pxtextmining's data_in (a bare JSON list)."""
    try:
        doc = strict_json_loads(text, nan_as_null=True)  # pxtextmining's files hold NaN
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return _objects(doc["items"], "item"), False
    doc = unwrap_r_json(doc)  # pxtextmining's docker README R recipe: JSON inside JSON
    if not isinstance(doc, list):
        raise FormatError("a JSON file must be a list of {comment_id, comment_text} objects")
    return _objects(doc, "item"), True


def _read_jsonl(text: str) -> list[CommentIn]:
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): see the docstring
        if not line.strip():
            continue
        try:
            rows.append(strict_json_loads(line))
        except json.JSONDecodeError as exc:
            raise FormatError(f"line {n}: not valid JSON: {exc}") from None
    return _objects(rows, "line")


@dataclass(frozen=True)
class FileItems:
    """A file's comments; `pxtextmining` when it is pxtextmining's docker data_in (a bare JSON
    list), whose results go back in its data_out shape."""

    items: list[CommentIn]
    pxtextmining: bool = False

    @property
    def blank_rows(self) -> list[int]:
        return [n for n, i in enumerate(self.items) if is_blank(i.comment_text)]


def target_of(name: str) -> JobTarget:
    """The target a file name asks for: `X.m.json` labels, `X.s.json` sentiment, `X.ms.json`
    or no tag both (pxtextmining's `-t m|s|ms`)."""
    suffixes = PurePosixPath(name).suffixes
    tag = suffixes[-2][1:].lower() if len(suffixes) >= 2 else ""
    return TARGETS.get(tag, "ms")


def read_file(data: bytes, family: Family, max_text_chars: int | None = None) -> FileItems:
    """Comments in the file; FormatError says why when it cannot be used as a whole."""
    text = decode(data)
    px = False
    if family == "json":
        items, px = _read_json(text)
    else:
        items = _read_csv(text) if family == "csv" else _read_jsonl(text)
    try:
        check_items(items, max_text_chars=max_text_chars)  # the contract's limits, no others
    except ItemsRejected as exc:
        raise FormatError(exc.reason) from None
    return FileItems(items, px)


def read_items(data: bytes, family: Family, max_text_chars: int | None = None) -> list[CommentIn]:
    """Comments in the file (see `read_file`)."""
    return read_file(data, family, max_text_chars).items


def write_px(predictions: Sequence[Prediction], target: JobTarget, blank_rows: Sequence[int]) -> bytes:
    """pxtextmining's data_out: [{comment_id, sentiment, labels}] (keys per target, in its
    order), sentiment a number 1..5 or "Labelling not possible" (blank text only)."""
    return json.dumps(result_rows(predictions, target, blank_rows)).encode("utf-8")


def _row(p: Prediction) -> dict[str, Any]:
    return {
        "comment_id": p.comment_id,
        "labels": list(p.labels),
        "sentiment": p.sentiment.model_dump() if p.sentiment else None,
    }


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads these as a formula


def spreadsheet_safe(cell: str) -> str:
    """`cell` with a leading "'" when it starts like a formula (OWASP's CSV injection rule), so
    an id such as `=HYPERLINK(...)` or `+1` opens in Excel as the text it is."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def write_results(predictions: list[Prediction], family: Family) -> bytes:
    """Results as bytes in the same family as the input: id, labels, sentiment (no text)."""
    if family == "json":
        return json.dumps([_row(p) for p in predictions], ensure_ascii=False, indent=1).encode()
    if family == "jsonl":
        return "".join(json.dumps(_row(p), ensure_ascii=False) + "\n" for p in predictions).encode()
    out = io.StringIO(newline="")
    w = csv.writer(out)
    w.writerow(["comment_id", "labels", "sentiment", "sentiment_label"])
    for p in predictions:
        s = p.sentiment
        w.writerow([spreadsheet_safe(p.comment_id), LABEL_SEPARATOR.join(p.labels),
                    s.score if s else "", s.label if s else ""])
    return out.getvalue().encode("utf-8")
