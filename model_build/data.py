"""Load a labelled comments CSV (the NHS v6 framework shape) into a training table.

Any CSV of the same shape works: `Comment ID`, `FFT question`, `FFT answer`,
`Comment sentiment` and one one-hot column per v6 label. Labels are mapped to the
32-label v7 taxonomy with `label_map_v6_to_v7.csv` (several v6 columns merge into one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from twolane.bundle import DataSpec
from twolane.rules import LABELLING_NOT_POSSIBLE, QUESTION_TYPES, normalise, question_type_of

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "data" / "nhs-patient-feedback" / "v6framework_230831.csv"
DEFAULT_LABEL_MAP = ROOT / "data" / "nhs-patient-feedback" / "label_map_v6_to_v7.csv"

SEED = 42
TEST_SIZE = 0.2
SENTIMENT_CLASSES = ["1", "2", "3", "4", "5"]  # 1 very positive .. 5 very negative

ID_COL, QUESTION_COL, TEXT_COL, SENTIMENT_COL = (
    "Comment ID", "FFT question", "FFT answer", "Comment sentiment",
)


class DataError(ValueError):
    """The data cannot be learnt from as it is: the message is one line naming the column or
    value at fault (the CLI prints it and exits 2)."""


def question_type(question: object) -> str:
    """Normalise an FFT question to what_good / could_improve / nonspecific (the rule book's)."""
    return question_type_of(question)


def load_label_map(path: Path = DEFAULT_LABEL_MAP) -> dict[str, list[str]]:
    """v7 label -> the v6 columns that make it, in the map file's order."""
    lm = pd.read_csv(path, dtype=str)
    out: dict[str, list[str]] = {}
    for v7, v6 in zip(lm["v7_label"], lm["v6_column"], strict=False):
        out.setdefault(v7, []).append(v6)
    return out


Context = Literal["question_type", "column", "none"]


@dataclass
class Dataset:
    """Comments with label targets Y (n x L, one 1 a row at most when not multilabel),
    sentiment (index into sentiment_classes, or -1) and split.

    question_types: per row, the NHS question type (context "question_type"), the raw value of
    the spec's context column (context "column"), or "" (context "none")."""

    ids: list[str]
    texts: list[str]
    question_types: list[str]
    labels: list[str]
    Y: np.ndarray  # uint8, n x L
    sentiment: np.ndarray  # int, -1 = unlabelled
    is_test: np.ndarray  # bool
    fingerprint: str
    source: str
    sentiment_classes: list[str] = field(default_factory=lambda: list(SENTIMENT_CLASSES))  # [] = none
    multilabel: bool = True
    unlabellable: str | None = LABELLING_NOT_POSSIBLE
    context: Context = "question_type"
    spec: DataSpec | None = None  # how the file was read (the manifest's data_spec)

    @property
    def lnp(self) -> int | None:
        """The unlabellable label's column, or None when the taxonomy has none."""
        return self.labels.index(self.unlabellable) if self.unlabellable in self.labels else None

    def subset(self, mask: np.ndarray) -> Dataset:
        idx = np.flatnonzero(mask)
        return replace(
            self,
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            question_types=[self.question_types[i] for i in idx],
            Y=self.Y[idx],
            sentiment=self.sentiment[idx],
            is_test=self.is_test[idx],
        )

    @property
    def train(self) -> Dataset:
        return self.subset(~self.is_test)

    @property
    def test(self) -> Dataset:
        return self.subset(self.is_test)

    def head(self, n: int) -> Dataset:
        """The first n rows of train and of test, proportionally (for quick tests)."""
        n_test = max(1, int(round(n * TEST_SIZE)))
        tr = np.flatnonzero(~self.is_test)[: n - n_test]
        te = np.flatnonzero(self.is_test)[:n_test]
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[tr] = True
        mask[te] = True
        return self.subset(mask)


def fingerprint_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_mask(n: int, seed: int = SEED, test_size: float = TEST_SIZE) -> np.ndarray:
    """Deterministic test mask: a seeded permutation, the first 20 % are test."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    mask = np.zeros(n, dtype=bool)
    mask[order[: int(round(n * test_size))]] = True
    return mask


def load_dataset(path: Path | str = DEFAULT_DATA, label_map: Path | str = DEFAULT_LABEL_MAP) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in (ID_COL, TEXT_COL) if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}")
    lmap = load_label_map(Path(label_map))
    labels = list(lmap)
    absent = sorted({c for cols in lmap.values() for c in cols if c not in df.columns})
    if len(absent) == sum(len(c) for c in lmap.values()):
        raise DataError(f"{path} has none of the label columns of {label_map}")
    Y = np.zeros((len(df), len(labels)), dtype=np.uint8)
    for j, v7 in enumerate(labels):
        for v6 in lmap[v7]:
            if v6 in df.columns:
                Y[:, j] |= (df[v6].str.strip().isin(["1", "1.0"])).to_numpy(np.uint8)
    sent = df.get(SENTIMENT_COL, pd.Series([""] * len(df))).str.strip().str.replace(".0", "", regex=False)
    sentiment = np.array([SENTIMENT_CLASSES.index(s) if s in SENTIMENT_CLASSES else -1 for s in sent])
    qts = [question_type(q) for q in df.get(QUESTION_COL, pd.Series([""] * len(df)))]
    spec = DataSpec(preset="nhs", id_column=ID_COL, text_column=TEXT_COL,
                    label_columns=[c for cols in lmap.values() for c in cols if c in df.columns],
                    sentiment_column=SENTIMENT_COL if SENTIMENT_COL in df.columns else None,
                    sentiment_order=list(SENTIMENT_CLASSES),
                    context_column=QUESTION_COL if QUESTION_COL in df.columns else None,
                    context_values=list(QUESTION_TYPES), unlabellable=LABELLING_NOT_POSSIBLE)
    return Dataset(
        ids=df[ID_COL].astype(str).tolist(),
        texts=[normalise(t) for t in df[TEXT_COL]],
        question_types=qts,
        labels=labels,
        Y=Y,
        sentiment=sentiment,
        is_test=split_mask(len(df)),
        fingerprint=fingerprint_file(path),
        source=str(path),
        spec=spec,
    )


POLARITY_SET = ROOT / "data" / "polarity" / "polarity_set.csv"


def polarity_cases(path: Path = POLARITY_SET) -> list[tuple[str, str, str]]:
    """(text, question type, "positive"|"negative"): every comment of the hand-written polarity
    set (data/polarity/README.md) under every question type."""
    from twolane.rules import QUESTION_TYPES

    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return [(t, q, side) for t, side in zip(df["text"], df["side"], strict=True) for q in QUESTION_TYPES]


def polarity_right(side: str, score: int | None) -> bool:
    """A sentiment score (1 very positive .. 5 very negative) is on the right side of `side`."""
    if score is None:
        return False
    return score <= 2 if side == "positive" else score >= 4
