"""Any team's labelled comments: read a CSV, TSV, .xlsx or JSONL file by a data spec.

The spec names the columns (`SpecArgs`, the `twolane build` flags; docs/own_data.md):

- `id_column` (default `id`; row numbers when the file has none), `text_column` (default `text`);
- labels, one of: `labels_column` (default `labels`): one label a row (single-label), or several
  joined by `label_sep` (multi-label: any cell holding the separator makes the taxonomy
  multi-label), or `label_columns`: wide 0/1 columns, one per label (multi-label);
- `sentiment_column` (default `sentiment` where present): any set of classes, numbers ordered by
  value, words in the order `sentiment_order` gives (words without an order: unordered classes,
  sorted by name; nothing then reads an order into them); none at all is fine;
- `context_column`: an optional categorical column that conditions the model as the NHS question
  type does (twolane.rules.context_input);
- `unlabellable`: the data's "cannot be labelled" label (default: "Labelling not possible"
  where the labels hold it; otherwise the taxonomy has none).

With no flag and the NHS file's columns, the NHS preset reads it (model_build.data.load_dataset).
Everything the build cannot learn from is a `DataError` whose message is one line naming the
column or value: a missing column, an empty text column, one class only, fewer rows than the
split needs, duplicate ids, a wide cell that is not 0/1, a sentiment value out of the order.
The split is stratified (by each row's rarest label) and seeded.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_build.data import ID_COL, SEED, TEST_SIZE, TEXT_COL, DataError, Dataset, fingerprint_file, load_dataset
from twolane.bundle import DataSpec
from twolane.rules import LABELLING_NOT_POSSIBLE, normalise

MIN_ROWS = 30  # rows with text: fewer cannot fill a training split and a test split
MIN_TEST_ROWS = 5
FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".xlsx": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TRUE = frozenset({"1", "1.0", "true", "yes", "y", "x"})
FALSE = frozenset({"0", "0.0", "", "false", "no", "n"})
SHOWN = 40  # characters of a value a refusal shows


@dataclass(frozen=True)
class SpecArgs:
    """The data-spec flags as given (None: the default, or the NHS preset when every one is)."""

    id_column: str | None = None
    text_column: str | None = None
    labels_column: str | None = None
    label_sep: str | None = None
    label_columns: tuple[str, ...] | None = None
    sentiment_column: str | None = None
    sentiment_order: tuple[str, ...] | None = None
    context_column: str | None = None
    unlabellable: str | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> SpecArgs:
        """The spec from a build command's flags (its locals: other names ignored); the comma
        lists `label_columns` and `sentiment_order` split (`split_list`)."""
        kw = {f.name: flags.get(f.name) for f in fields(cls)}
        kw["label_columns"] = split_list(kw["label_columns"])
        kw["sentiment_order"] = split_list(kw["sentiment_order"])
        return cls(**kw)


def spec_args_of(spec: DataSpec) -> SpecArgs:
    """The flags that read a file as a bundle's recorded data spec read it (a non-NHS spec:
    `twolane build cascade --data FILE` on a team's batch bundle)."""
    return SpecArgs(
        id_column=None if spec.id_column == "(row number)" else spec.id_column,
        text_column=spec.text_column, labels_column=spec.labels_column,
        label_sep=spec.label_sep, label_columns=tuple(spec.label_columns) or None,
        sentiment_column=spec.sentiment_column,
        sentiment_order=tuple(spec.sentiment_order) if spec.sentiment_ordered and spec.sentiment_order else None,
        context_column=spec.context_column, unlabellable=spec.unlabellable)


def split_list(value: str | None) -> tuple[str, ...] | None:
    """A comma list from a flag ("a, b,c" -> ("a", "b", "c")); None stays None."""
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def shown(value: object) -> str:
    """A value for a refusal: repr'd, cut to SHOWN characters."""
    v = str(value)
    return repr(v if len(v) <= SHOWN else v[:SHOWN] + "...")


# --------------------------------------------------------------------------- reading
def _cell(value: Any, sep: str) -> str:
    """A JSON value as a cell: null -> "", a list -> its items joined by sep, 3.0 -> "3"."""
    if value is None:
        return ""
    if isinstance(value, list):
        return sep.join(_cell(v, sep) for v in value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def read_table(path: Path, sep: str = ";") -> tuple[pd.DataFrame, str]:
    """The file as a table of strings (blank cells ""), and its format name.

    Raises DataError for an unknown extension or an unreadable file."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path.name}: unknown format {path.suffix or '(no extension)'}; "
                        f"use .csv, .tsv, .xlsx or .jsonl")
    try:
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                             sep="\t" if fmt == "tsv" else ",")
        elif fmt == "xlsx":
            df = pd.read_excel(path, dtype=object, engine="openpyxl")
            df = df.map(lambda v: _cell(None if isinstance(v, float) and math.isnan(v) else v, sep))
        else:
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise DataError(f"{path.name}: line {n} is not a JSON object")
                    rows.append({k: _cell(v, sep) for k, v in obj.items()})
            df = pd.DataFrame(rows).fillna("")
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text") from None
    except (json.JSONDecodeError, pd.errors.ParserError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path.name}: not a readable {fmt.upper()} file ({type(e).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df, fmt


def _column(df: pd.DataFrame, name: str, what: str, flag: str, path: Path) -> pd.Series:
    if name not in df.columns:
        cols = ", ".join(repr(c) for c in list(df.columns)[:12]) + (" ..." if len(df.columns) > 12 else "")
        raise DataError(f"{path.name}: no {what} column {name!r} (columns: {cols}); name it with {flag}")
    return df[name].map(lambda v: normalise(v).strip())


# --------------------------------------------------------------------------- labels
def _wide(df: pd.DataFrame, cols: tuple[str, ...], path: Path) -> tuple[list[str], np.ndarray]:
    Y = np.zeros((len(df), len(cols)), np.uint8)
    for j, c in enumerate(cols):
        vals = _column(df, c, "label", "--label-columns", path).str.lower()
        bad = sorted(set(vals) - TRUE - FALSE)
        if bad:
            raise DataError(f"{path.name}: label column {c!r} holds {shown(bad[0])}; wide label "
                            f"columns hold 0/1 (or true/false, yes/no, blank)")
        Y[:, j] = vals.isin(TRUE).to_numpy(np.uint8)
    return list(cols), Y


def _delimited(cells: pd.Series, sep: str) -> tuple[list[str], np.ndarray, bool]:
    """Labels (sorted), Y and whether any row holds several labels."""
    rows = [[lab.strip() for lab in c.split(sep) if lab.strip()] if sep else ([c] if c else []) for c in cells]
    labels = sorted({lab for r in rows for lab in r})
    col = {lab: j for j, lab in enumerate(labels)}
    Y = np.zeros((len(rows), len(labels)), np.uint8)
    for i, r in enumerate(rows):
        Y[i, [col[lab] for lab in r]] = 1
    return labels, Y, any(len(set(r)) > 1 for r in rows)


# --------------------------------------------------------------------------- sentiment
def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _canonical(v: str) -> str:
    """"4.0" -> "4": a number written two ways is one class."""
    x = _number(v)
    return str(int(x)) if x is not None and x.is_integer() else v


def is_ordered(classes: list[str], order: tuple[str, ...] | None) -> bool:
    """Whether sentiment classes read by `_sentiment` have an order: given by
    --sentiment-order, or numbers (ordered by value); words without an order are unordered."""
    return bool(order) or all(_number(v) is not None for v in classes)


def unordered_note(column: str, classes: list[str]) -> str:
    """The build's one-line note for words without --sentiment-order."""
    return (f"note: sentiment column {column!r} holds words without --sentiment-order: "
            f"{len(classes)} unordered classes ({', '.join(classes[:5])}"
            f"{', ...' if len(classes) > 5 else ''}); give --sentiment-order to say which end is negative")


def _sentiment(cells: pd.Series, order: tuple[str, ...] | None, col: str, path: Path
               ) -> tuple[list[str], np.ndarray]:
    present = [_canonical(v) for v in cells]
    seen = sorted({v for v in present if v})
    if order:
        classes = [_canonical(v) for v in order]
        if len(set(classes)) != len(classes):
            raise DataError(f"--sentiment-order names a class twice: {', '.join(order)}")
        out = sorted(set(seen) - set(classes))
        if out:
            raise DataError(f"{path.name}: sentiment column {col!r} holds {shown(out[0])}, which "
                            f"--sentiment-order does not name")
    elif all(_number(v) is not None for v in seen):
        classes = sorted(seen, key=lambda v: _number(v) or 0.0)
    else:  # words and no order: unordered classes, in sorted order (`unordered_note`)
        classes = seen
    used = sorted(set(seen))
    if len(used) < 2:
        raise DataError(f"{path.name}: sentiment column {col!r} holds one class only "
                        f"({shown(used[0]) if used else 'none'}): nothing to learn")
    index = {c: k for k, c in enumerate(classes)}
    return classes, np.array([index[v] if v else -1 for v in present], dtype=int)


# --------------------------------------------------------------------------- split
def stratified_split(Y: np.ndarray, seed: int = SEED, test_size: float = TEST_SIZE) -> np.ndarray:
    """A seeded, stratified test mask: rows grouped by their rarest label (rows with no label
    form one group), round(test_size x group) of each group to test; a group of one row stays
    in training. bool n."""
    n = len(Y)
    freq = Y.sum(0)
    key = np.full(n, -1)
    for i in np.flatnonzero(Y.sum(1) > 0):
        on = np.flatnonzero(Y[i])
        key[i] = on[np.argmin(freq[on])]
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, bool)
    for k in np.unique(key):
        rows = rng.permutation(np.flatnonzero(key == k))
        take = int(round(len(rows) * test_size)) if len(rows) > 1 else 0
        mask[rows[:take]] = True
    return mask


# --------------------------------------------------------------------------- the spec
def _ids(df: pd.DataFrame, args: SpecArgs, path: Path) -> tuple[list[str], str | None]:
    """The ids and the id column (None: the file has no `id` column and none was named: the
    ids are row numbers from 1)."""
    if args.id_column is None and "id" not in df.columns:
        return [str(i + 1) for i in range(len(df))], None
    col = args.id_column or "id"
    return _column(df, col, "id", "--id-column", path).tolist(), col


def _check_ids(ids: list[str], col: str, path: Path) -> None:
    blank = sum(1 for i in ids if not i)
    if blank:
        raise DataError(f"{path.name}: id column {col!r} is blank on {blank} row(s)")
    dups = [i for i, c in Counter(ids).items() if c > 1]
    if dups:
        raise DataError(f"{path.name}: id column {col!r} repeats {len(dups)} id(s), e.g. "
                        + ", ".join(shown(d) for d in dups[:3]))


def _labels(df: pd.DataFrame, args: SpecArgs, sep: str, path: Path
            ) -> tuple[list[str], np.ndarray, bool, str | None, str | None]:
    """(labels, Y, multilabel, the labels column or None for wide columns, the unlabellable label)."""
    multilabel, col = True, None
    if args.label_columns:
        if args.labels_column:
            raise DataError("give --labels-column or --label-columns, not both")
        labels, Y = _wide(df, args.label_columns, path)
    else:
        col = args.labels_column or "labels"
        cells = _column(df, col, "labels", "--labels-column (or --label-columns A,B,...)", path)
        labels, Y, multilabel = _delimited(cells, sep)
    unl = args.unlabellable
    if unl is not None and unl not in labels:  # named by flag: a label of its own, set by rule only
        labels, Y = labels + [unl], np.hstack([Y, np.zeros((len(Y), 1), np.uint8)])
    if unl is None and LABELLING_NOT_POSSIBLE in labels:
        unl = LABELLING_NOT_POSSIBLE
    return labels, Y, multilabel, col, unl


def load(path: Path | str, args: SpecArgs = SpecArgs()) -> Dataset:
    """The file read by the spec (or by the NHS preset: no flag and the NHS file's columns).

    Raises DataError (one line naming the column or value) for anything the build cannot
    learn from; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {path}")
    sep = args.label_sep if args.label_sep is not None else ";"
    df, fmt = read_table(path, sep)
    if args.empty and fmt == "csv" and {ID_COL, TEXT_COL} <= set(df.columns):
        try:  # the NHS preset
            return load_dataset(path)
        except DataError:
            raise
        except (UnicodeDecodeError, ValueError, KeyError) as e:
            raise DataError(f"{path.name}: not readable as the NHS file ({type(e).__name__})") from None
    if len(df.columns) == 0:
        raise DataError(f"{path.name}: no columns")

    ids, id_col = _ids(df, args, path)
    text_col = args.text_column or "text"
    texts = _column(df, text_col, "text", "--text-column", path)
    labels, Y, multilabel, labels_col, unl = _labels(df, args, sep, path)
    sent_col = args.sentiment_column or ("sentiment" if "sentiment" in df.columns else None)
    if args.sentiment_order and sent_col is None:
        raise DataError("--sentiment-order given but no sentiment column (name it with --sentiment-column)")
    classes: list[str] = []
    sentiment = np.full(len(df), -1, dtype=int)
    if sent_col is not None:
        cells = _column(df, sent_col, "sentiment", "--sentiment-column", path)
        classes, sentiment = _sentiment(cells, args.sentiment_order, sent_col, path)
    contexts = [""] * len(df)
    if args.context_column:
        contexts = _column(df, args.context_column, "context", "--context-column", path).tolist()

    keep = (texts != "").to_numpy()  # the rows with text
    if not keep.any():
        raise DataError(f"{path.name}: text column {text_col!r} is empty")
    if id_col is not None:
        _check_ids([i for i, k in zip(ids, keep, strict=True) if k], id_col, path)
    idx = np.flatnonzero(keep)
    Y, sentiment = Y[idx], sentiment[idx]
    used = [lab for j, lab in enumerate(labels) if Y[:, j].any() and lab != unl]
    where = f"label columns {', '.join(labels[:3])}..." if args.label_columns else f"labels column {labels_col!r}"
    if len(used) < 2:
        raise DataError(f"{path.name}: {where} holds one class only "
                        f"({shown(used[0]) if used else 'no label at all'}): nothing to learn")
    if len(idx) < MIN_ROWS:
        raise DataError(f"{path.name}: {len(idx)} rows with text; the split needs at least {MIN_ROWS}")
    is_test = stratified_split(Y)
    if int(is_test.sum()) < MIN_TEST_ROWS:
        raise DataError(f"{path.name}: {len(idx)} rows give a test split of {int(is_test.sum())}; "
                        f"it needs at least {MIN_TEST_ROWS}")

    spec = DataSpec(file_format=fmt, id_column=id_col or "(row number)",
                    text_column=text_col, labels_column=labels_col, label_sep=sep,
                    label_columns=list(args.label_columns or ()), sentiment_column=sent_col,
                    sentiment_order=classes, context_column=args.context_column,
                    sentiment_ordered=not classes or is_ordered(classes, args.sentiment_order),
                    context_values=sorted({contexts[i] for i in idx if contexts[i]}),
                    unlabellable=unl)
    return Dataset(
        ids=[ids[i] for i in idx], texts=[texts.iloc[i] for i in idx],
        question_types=[contexts[i] for i in idx], labels=labels, Y=Y, sentiment=sentiment,
        is_test=is_test, fingerprint=fingerprint_file(path), source=str(path),
        sentiment_classes=classes, multilabel=multilabel, unlabellable=unl,
        context="column" if args.context_column else "none", spec=spec,
    )


__all__ = ["MIN_ROWS", "SpecArgs", "is_ordered", "load", "read_table", "spec_args_of", "split_list",
           "stratified_split", "unordered_note"]
