"""The build report: what a bundle is good at, per label, beside the model in its folder.

`write` puts `report.json` and `report.html` (a table and a bar chart of per-label test F1,
SVG inline) into the bundle folder before its manifest is written (both are hashed in
`manifest.files`); `print_summary` prints a short table (rich) of the same. Figures are the
build's test split (stratified, seeded: model_build.dataspec / model_build.data), scored by
model_build.metrics; a label with fewer training positives than `min_support` is flagged as not
to trust; a single-label taxonomy also gets its accuracy and its most frequent confusions.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from model_build import metrics
from model_build.choice import Choice
from twolane.bundle import Manifest

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
SHOWN_LABELS = 15  # rows of the printed table (worst F1 first); the files hold every label


def content(manifest: Manifest, Y: np.ndarray, pred: np.ndarray, test_metrics: dict[str, Any],
            per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The report as JSON: Y / pred the test truth and the default model's labels (n x L)."""
    tax = manifest.taxonomy
    default = manifest.default_model
    out: dict[str, Any] = {
        "version": manifest.version,
        "taxonomy": {"labels": len(tax.labels), "multilabel": tax.multilabel,
                     "unlabellable": tax.unlabellable, "sentiment_classes": tax.sentiment_classes},
        "data": manifest.data,
        "data_spec": manifest.data_spec.model_dump() if manifest.data_spec else None,
        "model": default,
        "scores": {k: v for k, v in test_metrics[default].items()},
        "per_label": per,
        "low_support_labels": [lab for lab, p in per.items() if p.get("low_support")],
        "min_support": metrics.MIN_SUPPORT,
    }
    if "sentiment" in test_metrics:
        out["sentiment"] = test_metrics["sentiment"]
    if "sentiment_choice" in test_metrics:  # model_build.choose: which head won, by how much
        out["sentiment_choice"] = test_metrics["sentiment_choice"]
    if not tax.multilabel:
        out["confusions"] = metrics.confusions(Y, pred, list(tax.labels))
    return out


def _svg(per: dict[str, dict[str, Any]]) -> str:
    """A horizontal bar chart of per-label test F1 (low-support labels in orange), as SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(per.items(), key=lambda kv: kv[1]["f1"])
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.22 * len(items) + 0.8)))
    ax.barh([lab[:40] for lab, _ in items], [p["f1"] for _, p in items],
            color=["#e08214" if p.get("low_support") else "#2166ac" for _, p in items])
    ax.set_xlim(0, 1)
    ax.set_xlabel("test F1 (orange: too little training support)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _html(rep: dict[str, Any]) -> str:
    e = html.escape
    s = rep["scores"]
    head = (f"<h1>Build report {e(rep['version'])}</h1><p>{rep['taxonomy']['labels']} labels, "
            f"{'multi' if rep['taxonomy']['multilabel'] else 'single'}-label; model {e(rep['model'])}; "
            f"test rows {s.get('rows', 0)}: macro-F1 {s['macro_f1']:.3f}, micro-F1 {s['micro_f1']:.3f}"
            + (f", accuracy {s['accuracy']:.3f}" if "accuracy" in s else "") + "</p>")
    if "sentiment" in rep:
        head += (f"<p>Sentiment ({e(', '.join(rep['taxonomy']['sentiment_classes']))}): accuracy "
                 f"{rep['sentiment']['accuracy']:.3f}, macro-F1 {rep['sentiment']['macro_f1']:.3f}</p>")
    if "sentiment_choice" in rep:
        head += f"<p>{e(Choice(**rep['sentiment_choice']).line())}</p>"
    if rep["low_support_labels"]:
        head += (f"<p><b>Low support</b> (fewer than {rep['min_support']} training examples; do not "
                 f"rely on them): {e(', '.join(rep['low_support_labels']))}</p>")
    rows = "".join(
        f"<tr><td>{e(lab)}</td><td>{p.get('train_support', '')}</td><td>{p['test_support']}</td>"
        f"<td>{p['f1']:.3f}</td><td>{p['precision']:.3f}</td><td>{p['recall']:.3f}</td>"
        f"<td>{'yes' if p.get('low_support') else ''}</td></tr>"
        for lab, p in sorted(rep["per_label"].items(), key=lambda kv: kv[1]["f1"]))
    table = ("<table><tr><th>label</th><th>train support</th><th>test support</th><th>F1</th>"
             "<th>precision</th><th>recall</th><th>low support</th></tr>" + rows + "</table>")
    conf = ""
    if rep.get("confusions"):
        conf = ("<h2>Most frequent confusions (test)</h2><table><tr><th>true</th><th>predicted</th>"
                "<th>rows</th></tr>") + "".join(
            f"<tr><td>{e(c['true'])}</td><td>{e(c['predicted'])}</td><td>{c['rows']}</td></tr>"
            for c in rep["confusions"]) + "</table>"
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Build report</title>"
            f"<style>{style}</style></head><body>{head}<h2>Per-label test F1</h2>{_svg(rep['per_label'])}"
            f"<h2>Per label</h2>{table}{conf}</body></html>")


def write(bundle_dir: Path, manifest: Manifest, Y: np.ndarray, pred: np.ndarray,
          test_metrics: dict[str, Any], per: dict[str, dict[str, Any]]) -> list[str]:
    """Write report.json and report.html into bundle_dir; returns their names."""
    rep = content(manifest, Y, pred, test_metrics, per)
    Path(bundle_dir, REPORT_JSON).write_text(json.dumps(rep, indent=2), encoding="utf-8")
    Path(bundle_dir, REPORT_HTML).write_text(_html(rep), encoding="utf-8")
    return [REPORT_JSON, REPORT_HTML]


def print_summary(bundle_dir: Path, console: Console) -> None:
    """A short table of a bundle's report (worst labels first); nothing when it has none."""
    path = Path(bundle_dir, REPORT_JSON)
    if not path.is_file():
        return
    rep = json.loads(path.read_text(encoding="utf-8"))
    t = Table(title=f"test split, {rep['model']} (worst {SHOWN_LABELS} labels; all in {REPORT_HTML})")
    for col in ("label", "train", "test", "F1", "flag"):
        t.add_column(col, justify="left" if col in ("label", "flag") else "right")
    for lab, p in sorted(rep["per_label"].items(), key=lambda kv: kv[1]["f1"])[:SHOWN_LABELS]:
        t.add_row(lab[:40], str(p.get("train_support", "")), str(p["test_support"]), f"{p['f1']:.3f}",
                  "low support" if p.get("low_support") else "")
    console.print(t)
    for c in rep.get("confusions", [])[:3]:
        console.print(f"  confused: {c['true']} -> {c['predicted']} ({c['rows']} rows)")


__all__ = ["REPORT_HTML", "REPORT_JSON", "content", "print_summary", "write"]
