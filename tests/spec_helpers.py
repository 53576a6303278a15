"""A real bundle built from a team's own data spec (issue 21), for the drift and page tests.

Real text: the UCI drug reviews (data/drug-reviews/, provenance and licence there). The
taxonomy is a team's own: the six most common conditions, every other condition as "Other"
(single-label, 7 labels), the three-class `rating` as sentiment, and a `channel` context
column (web / app / phone, assigned at random with a seed: the file has no such column, a team
would). A seeded random 60 % of the rows build the bundle (its drift reference is its own test
split); the other 40 % are held out: comments of the same source the bundle never saw, in the
same label, sentiment and channel mix.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DRUGS = ROOT / "data" / "drug-reviews" / "drug_reviews.csv"
TOP = ["Birth Control", "Depression", "Pain", "Acne", "Anxiety", "Insomnia"]
OTHER = "Other"
CHANNELS = ["web", "app", "phone"]
CHANNEL_SHARES = [0.5, 0.3, 0.2]
SENTIMENT_ORDER = ("negative", "neutral", "positive")
BUILD_SHARE = 0.6
SEED = 2026


def spec_args() -> Any:
    """The `twolane build instant` flags of this file (model_build.dataspec.SpecArgs)."""
    from model_build.dataspec import SpecArgs

    return SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                    sentiment_order=SENTIMENT_ORDER, context_column="channel")


@lru_cache(maxsize=1)
def split_rows() -> tuple[Any, Any]:
    """(rows the bundle is built from, held-out rows) as DataFrames with the columns
    id, review, condition, rating, channel."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(DRUGS, dtype=str, keep_default_na=False)
    df["condition"] = df["condition"].where(df["condition"].isin(TOP), OTHER)
    rng = np.random.default_rng(SEED)
    df["channel"] = rng.choice(CHANNELS, size=len(df), p=CHANNEL_SHARES)
    in_build = rng.random(len(df)) < BUILD_SHARE
    return df[in_build].reset_index(drop=True), df[~in_build].reset_index(drop=True)


def build_spec_bundle(out: Path) -> Path:
    """Build the instant bundle (the tests' SMALL config, few trees, no word aliases) from the
    build rows written as a CSV under `out`; returns the bundle folder."""
    from model_build.dataspec import load
    from model_build.instant import SMALL, build

    out.mkdir(parents=True, exist_ok=True)
    rows, _ = split_rows()
    path = out / "reviews.csv"
    rows.to_csv(path, index=False)
    ds = load(path, spec_args())
    return build(ds, out / "bundles", replace(SMALL, xgb_rounds=5, word_aliases=False))


def held_out(n: int, seed: int) -> list[tuple[str, str]]:
    """n (review, channel) pairs of held-out rows, a seeded random sample."""
    import numpy as np

    _, rest = split_rows()
    take = np.random.default_rng(seed).choice(len(rest), size=n, replace=False)
    return list(zip(rest["review"].iloc[take], rest["channel"].iloc[take], strict=True))


# hand-written consumer product reviews (data/drift/README.md): another domain for drift
REVIEWS_OTHER_DOMAIN = ROOT / "data" / "drift" / "product_reviews.csv"
