"""Quality side by side: the pxtextmining baseline (bench/baseline.py) and every twolane instant
model (bench/instant.py's `quality`) on the test split, into bench/RESULTS.md and
bench/results/quality.json.

    nice -n 10 .venv/bin/python -m bench.side_by_side --bundle bundles/instant
"""

from __future__ import annotations

import json
from typing import Any

START, END = "<!-- quality:start -->", "<!-- quality:end -->"


def side_by_side(bundle: Any) -> dict[str, Any]:
    """The baseline and every twolane instant model on the test split (bench.instant.quality)."""
    from bench.instant import quality
    from twolane.bundle import read_manifest, resolve_bundle

    b = resolve_bundle(bundle, "instant")
    q = quality(b, baseline=True)
    m = read_manifest(b)
    q["bundle"] = b.name
    q["default_model"] = m.default_model
    per = json.loads(json.dumps(m.metrics["per_label"]))  # a record for people: plain JSON
    q["low_support_labels"] = {lab: per[lab]["train_support"] for lab in m.rule_of(m.default_model).never_fallback}
    return q


def markdown(q: dict[str, Any]) -> str:
    rows = [("pxtextmining quick API as served (baseline)", q["pxtextmining_svc"]),
            ("twolane linear (SVM + Platt, ONNX)", q["linear"]),
            ("twolane XGBoost (ONNX)", q["xgboost"]),
            (f"twolane ensemble (ONNX){' - default' if q['default_model'] == 'ensemble' else ''}",
             q["ensemble"])]
    lines = [START, "## Quality side by side: pxtextmining baseline vs twolane (bench/side_by_side.py)", "",
             f"Test split ({q['linear']['rows']:,} comments with a label of the 1,582), instant bundle "
             f"`{q['bundle']}`. Scoring rule (model_build/metrics.py, the same for every model and "
             "for the build's gates): rows whose truth has at least one label; all 32 labels, "
             "'Labelling not possible' a label like any other; macro-F1 = mean of 32 per-label F1 "
             "(zero_division=0); each model's labels as it serves them.", "",
             "| model | macro-F1 | micro-F1 | exact match | hamming loss |", "|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['macro_f1']:.4f} | {m['micro_f1']:.4f} | "
                     f"{m['exact_accuracy']:.4f} | {m['hamming_loss']:.5f} |")
    s = q["sentiment"]
    lines += ["", f"Sentiment (default instant model): test accuracy {s['accuracy']:.4f} "
              f"({s['rows']} comments), macro-F1 {s['macro_f1']:.4f}; hand-written polarity set "
              f"{q['polarity_set']['right_side']:.1%} of {q['polarity_set']['cases']} on the right side.",
              "", "Labels under the minimum training support (do not rely on them): " + (", ".join(
                  f"{k} ({v})" for k, v in q["low_support_labels"].items()) or "none") + ".",
              "", "Raw figures: `bench/results/quality.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    from bench.results_md import write_section

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True, help="instant bundle folder or bundles root")
    args = ap.parse_args()
    root = Path(__file__).resolve().parent
    q = side_by_side(args.bundle)
    (root / "results" / "quality.json").write_text(json.dumps(q, indent=1, default=str))
    md = markdown(q)
    write_section(START, END, md, root / "RESULTS.md")
    print(md)
