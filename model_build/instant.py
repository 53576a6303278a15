"""Build the instant-lane bundle: TF-IDF + linear and TF-IDF + XGBoost for the labels, a
TF-IDF + multinomial sentiment model, exported together as ONE ONNX graph (raw strings in, one
tokeniser and bag of n-grams shared by every model; see instant_config.MODEL_FILE).

The recipe (`build`), one step a module:

    data and split     model_build.data / model_build.dataspec (seeded test split)
    rows, fit, tune    model_build.instant_tune: the models (model_build.instant_fit) with
                       out-of-fold probabilities on the TRAINING split (model_build.folds), per-label
                       thresholds tuned on those only, scored by the served decide step
    export             model_build.instant_export: one ONNX graph
    gate               model_build.instant_gates: ONNX vs in-memory labels on the test split
    package            model_build.instant_package: test metrics from the ONNX outputs, bundle +
                       manifest (twolane.bundle), drift reference, build report

Training uses the comments that can be labelled; empty/placeholder comments are labelled
"Labelling not possible" by rule (twolane.rules), in the build's metrics and in the predictor.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from model_build import dataspec, report
from model_build.choice import Choice
from model_build.data import DEFAULT_DATA, Dataset, load_dataset
from model_build.dataspec import SpecArgs
from model_build.errors import BuildError
from model_build.instant_config import SMALL, Config
from model_build.instant_export import export_graph
from model_build.instant_gates import parity_gate
from model_build.instant_package import score_test, write_bundle
from model_build.instant_tune import fit_models, rows_of, tune

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bundles"
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def build(ds: Dataset, out: Path, cfg: Config = Config()) -> Path:
    """Train, export, gate and write `out/instant/<version>/`; returns that folder.

    Raises BuildError when the data is too small, and the parity gate's error when ONNX and the
    in-memory models disagree."""
    t0 = time.perf_counter()
    r = rows_of(ds, cfg)
    with _progress() as prog:
        f = fit_models(ds, r, cfg, prog)
        thresholds, oof_scores = tune(ds, r, f, cfg)
        blob = export_graph(f, prog)
        onx, par, known = parity_gate(r, f, blob, thresholds, cfg, prog)
    scored = score_test(ds, r, f, onx, known, thresholds, cfg)
    return write_bundle(ds, out, cfg, r, f, blob, thresholds, oof_scores, par, scored, t0)


def run(data: Path | None = None, out: Path | None = None, rows: int | None = None,
        cfg: Config | None = None, spec: SpecArgs | None = None) -> Path:
    """`twolane build instant`: build from `data` read by `spec` (model_build.dataspec; default:
    the NHS CSV by its preset) into `out` (default bundles/).

    Raises DataError (one line naming the column or value) for data the build cannot learn
    from, BuildError when the build cannot make a trustworthy bundle."""
    cfg = cfg or Config()
    t0 = time.perf_counter()
    spec = spec or dataspec.SpecArgs()
    if data is None and spec.empty:
        ds = load_dataset(DEFAULT_DATA)
    else:
        ds = dataspec.load(Path(data) if data else DEFAULT_DATA, spec)
    if rows:
        ds = ds.head(rows)
    if ds.spec is not None and not ds.spec.sentiment_ordered and ds.spec.sentiment_column:
        console.print(dataspec.unordered_note(ds.spec.sentiment_column, ds.sentiment_classes))
    console.print(f"instant build: {len(ds.ids)} rows from {Path(ds.source).name}, "
                  f"{int((~ds.is_test).sum())} train / {int(ds.is_test.sum())} test, "
                  f"{len(ds.labels)} labels ({'multi' if ds.multilabel else 'single'}-label), "
                  f"sentiment: {', '.join(ds.sentiment_classes) or 'none'}")
    bundle = build(ds, Path(out) if out else DEFAULT_OUT, cfg)
    summarise(json.loads((bundle / "manifest.json").read_text(encoding="utf-8")))
    report.print_summary(bundle, console)
    console.print(f"bundle: {bundle}  ({time.perf_counter() - t0:.0f} s); report: {bundle / report.REPORT_HTML}")
    return bundle


def summarise(m: dict[str, Any]) -> None:
    """Print a built bundle's test figures (m: its manifest as JSON)."""
    metrics, par = m["metrics"], m["parity"]
    for name in ("linear", "xgboost", "ensemble"):
        s = metrics["test"][name]
        console.print(f"  {name:9s} test macro-F1 {s['macro_f1']:.3f}  micro-F1 {s['micro_f1']:.3f}  "
                      f"parity {par[name]['identical_rows']:.2%}")
    low = metrics.get("low_support_labels") or []
    if low:
        more = f" and {len(low) - 20} more (report.html)" if len(low) > 20 else ""
        console.print(f"  [yellow]low support[/] (< {metrics['min_support']} training positives, "
                      f"do not rely on them): " + ", ".join(
                          f"{lab} ({metrics['per_label'][lab]['train_support']})" for lab in low[:20]) + more)
    s = metrics["test"].get("sentiment")
    if s is not None:
        console.print(f"  sentiment test accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}  "
                      f"parity {par['sentiment']['identical_rows']:.2%}")
    c = metrics["test"].get("sentiment_choice")
    if c is not None:
        console.print("  " + Choice(**c).line())


def build_small_bundle(out: Path, rows: int = 800) -> Path:
    """A real, small instant bundle for tests (first `rows` rows, small vocabulary, few trees)."""
    ds = load_dataset(DEFAULT_DATA).head(rows)
    return build(ds, Path(out), replace(SMALL))
__all__ = ["SMALL", "BuildError", "Config", "build", "build_small_bundle", "run", "summarise"]
