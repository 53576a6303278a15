"""Instant-lane benchmark: quality and speed of the ONNX bundle next to scikit-learn, same run.

    nice -n 10 .venv/bin/python -m bench.instant [--bundle DIR] [--no-baseline]

Quality (test split, the one scoring rule in model_build/metrics.py): linear, XGBoost and
their ensemble from the bundle's ONNX files, next to the true baseline, pxtextmining's quick-API
pipeline as it serves (bench/baseline.py: its preprocessing, TfidfVectorizer() + one
SVC(C=15, class_weight="balanced", probability=True) per label, and its post-processing),
trained here on the same training split. Sentiment accuracy and the hand-written polarity set
(data/polarity/) for the default model.

Speed: the ONNX predictor (labels + sentiment) vs the same model as a scikit-learn pipeline
(TfidfVectorizer + one-vs-rest LogisticRegression [+ sentiment LogisticRegression]) refitted
here with the bundle's configuration. The machine is shared: each figure is the best of a few
repeats. Results: bench/results/instant.json and the "Instant lane" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.results_md import write_section
from bench.timing import best_of

warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=True) in sklearn 1.9
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # and in joblib's workers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "instant.json"
MD = ROOT / "bench" / "RESULTS.md"
START, END = "<!-- instant:start -->", "<!-- instant:end -->"
TARGETS = {"p50_ms_1_comment": 1.0, "comments_per_s_big_batch": 10_000, "peak_rss_mb": 300,
           "cold_start_s": 0.5, "macro_f1": 0.58, "micro_f1": 0.78,
           "exact_accuracy": 0.68}




# ----------------------------------------------------------------------------- quality
def quality(bundle: Path, baseline: bool) -> dict[str, Any]:
    from model_build import metrics
    from model_build.data import DEFAULT_DATA, load_dataset
    from twolane.predictors.instant import InstantPredictor
    from twolane.rules import LABELLING_NOT_POSSIBLE, is_unlabellable

    ds = load_dataset(DEFAULT_DATA)
    test = ds.test
    lnp = ds.labels.index(LABELLING_NOT_POSSIBLE)
    unl = np.array([is_unlabellable(t) for t in test.texts])
    out: dict[str, Any] = {"test_rows": len(test.texts), "unlabellable_test_rows": int(unl.sum())}
    for model in ("linear", "xgboost", "ensemble"):
        p = InstantPredictor.from_bundle(bundle, model=model)
        P, S = p.predict_arrays(test.texts, test.question_types)
        D = p.decide(P, S).astype(np.uint8)  # as served: sentiment bars the fallback's praise
        out[model] = metrics.multilabel_scores(test.Y, D)
        out[model + "_labellable_rows_only"] = metrics.multilabel_scores(test.Y[~unl], D[~unl])
    S = p.sentiment_proba(test.texts, test.question_types)
    served = ~np.isnan(S).any(1)  # rows that get a sentiment (not unlabellable or unknown)
    s_true = np.where(served, test.sentiment, -1)
    out["sentiment"] = metrics.sentiment_scores(s_true, np.nan_to_num(S).argmax(1))
    from model_build.data import polarity_cases, polarity_right

    cases = polarity_cases()
    d = InstantPredictor.from_bundle(bundle)
    got = d.predict_texts([c[0] for c in cases], [c[1] for c in cases])
    out["polarity_set"] = {"cases": len(cases), "right_side": float(np.mean(
        [polarity_right(c[2], g.sentiment.score if g.sentiment else None)
         for c, g in zip(cases, got, strict=True)]))}
    if baseline:
        out["pxtextmining_svc"] = pxtextmining_baseline(ds, unl, lnp)
    return out


def pxtextmining_baseline(ds: Any, unl_test: np.ndarray, lnp: int) -> dict[str, Any]:
    """The true baseline (bench/baseline.py), trained on the training split: its served labels."""
    from bench.baseline import fit_predict
    from model_build import metrics

    train, test = ds.train, ds.test
    t0 = time.perf_counter()
    D = fit_predict(train.texts, train.Y, test.texts, ds.labels, jobs=2)
    res = metrics.multilabel_scores(test.Y, D)
    res["labellable_rows_only"] = metrics.multilabel_scores(test.Y[~unl_test], D[~unl_test])
    res["train_and_predict_s"] = round(time.perf_counter() - t0, 1)
    return res


# ----------------------------------------------------------------------------- speed
def sklearn_pipeline(bundle: Path) -> tuple[Any, Any]:
    """The bundle's linear + sentiment models as a scikit-learn pipeline (refitted, same config)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    from model_build.data import DEFAULT_DATA, load_dataset
    from twolane.bundle import read_manifest
    from twolane.rules import is_unlabellable, model_input

    m = read_manifest(bundle)
    use_qt = m.serving.context == "question_type"
    cfg = json.loads(json.dumps(m.build))  # the build configuration: a record, plain JSON
    tr = load_dataset(DEFAULT_DATA).train
    keep = [i for i, t in enumerate(tr.texts) if not is_unlabellable(t)]
    texts = [tr.texts[i] for i in keep]
    if use_qt:
        texts = [model_input(t, tr.question_types[i]) for t, i in zip(texts, keep, strict=False)]
    Y = tr.Y[keep][:, tr.Y[keep].sum(0) > 0]  # OneVsRest needs two classes per label
    s = tr.sentiment[keep]
    vec = TfidfVectorizer(ngram_range=(1, cfg["ngram_max"]), min_df=cfg["min_df"],
                          max_features=cfg["max_features"], dtype=np.float32, binary=True)
    lab = make_pipeline(vec, OneVsRestClassifier(LogisticRegression(
        C=cfg["linear_C"], class_weight=cfg["linear_class_weight"], solver="liblinear"))).fit(texts, Y)
    sent = LogisticRegression(C=cfg["sentiment_C"], max_iter=2000).fit(
        lab[0].transform([texts[i] for i in np.flatnonzero(s >= 0)]), s[s >= 0])
    return lab, sent


def speed_in_process(bundle: Path, texts: list[str]) -> dict[str, Any]:
    from twolane.predictors.instant import InstantPredictor

    rng = np.random.default_rng(0)
    lab, sent = sklearn_pipeline(bundle)

    def sk_both(batch: list[str]) -> None:
        X = lab[0].transform(batch)
        lab[1].predict_proba(X)
        sent.predict_proba(X)

    out: dict[str, Any] = {"threads": {}}
    for threads in (2, 1):
        p = InstantPredictor.from_bundle(bundle, threads=threads)
        p.predict_texts(texts[:10])
        r: dict[str, Any] = {}
        for n in (1000, 10_000):
            batch = [texts[i] for i in rng.integers(0, len(texts), n)]
            r[f"onnx_predict_{n}_per_s"] = round(n / best_of(lambda p=p, b=batch: p.predict_texts(b)))
            r[f"onnx_arrays_{n}_per_s"] = round(n / best_of(lambda p=p, b=batch: p.predict_arrays(b)))
            if threads == 2:
                r[f"sklearn_labels_{n}_per_s"] = round(n / best_of(lambda b=batch: lab.predict_proba(b)))
                r[f"sklearn_labels_sentiment_{n}_per_s"] = round(n / best_of(lambda b=batch: sk_both(b)))
        out["threads"][threads] = r

    # The ensemble (linear + XGBoost), for the quality/speed trade-off.
    ens = InstantPredictor.from_bundle(bundle, model="ensemble")
    batch = [texts[i] for i in rng.integers(0, len(texts), 10_000)]
    ens.predict_arrays(batch[:10])
    out["ensemble_arrays_10000_per_s"] = round(10_000 / best_of(lambda: ens.predict_arrays(batch)))

    # One comment at a time, in process (the API path: predictor.predict on one item).
    p = InstantPredictor.from_bundle(bundle)
    singles = [texts[i] for i in rng.integers(0, len(texts), 2000)]
    for t in singles[:100]:
        p.predict_texts([t])
    lat = []
    for t in singles:
        t0 = time.perf_counter()
        p.predict_texts([t])
        lat.append(time.perf_counter() - t0)
    sk = []
    for t in singles[:1000]:
        t0 = time.perf_counter()
        sk_both([t])
        sk.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1000
    skms = np.array(sk) * 1000
    out["one_comment"] = {
        "onnx_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "onnx_p99_ms": round(float(np.percentile(ms, 99)), 3),
        "sklearn_p50_ms": round(float(np.percentile(skms, 50)), 3),
        "sklearn_p99_ms": round(float(np.percentile(skms, 99)), 3),
        "calls": len(lat),
    }
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        pickle.dump((lab, sent), f)
        out["_sklearn_pickle"] = f.name
    return out


RSS_ONNX = """
import re, sys, time, numpy as np
t0 = time.perf_counter()
from twolane.predictors.instant import InstantPredictor
p = InstantPredictor.from_bundle(sys.argv[1])
p.predict_texts(["The staff were kind"])
first = time.perf_counter() - t0
texts = open(sys.argv[2], encoding="utf-8").read().split("\\n")
p.predict_texts(texts)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(first, int(hwm) / 1024)
"""

RSS_SKLEARN = """
import re, sys, time, pickle
t0 = time.perf_counter()
lab, sent = pickle.load(open(sys.argv[1], "rb"))
X = lab[0].transform(["The staff were kind"]); lab[1].predict_proba(X); sent.predict_proba(X)
first = time.perf_counter() - t0
texts = open(sys.argv[2], encoding="utf-8").read().split("\\n")
X = lab[0].transform(texts); lab[1].predict_proba(X); sent.predict_proba(X)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(first, int(hwm) / 1024)
"""


def fresh_process(bundle: Path, pickle_path: str, texts: list[str]) -> dict[str, Any]:
    """Cold start (fresh interpreter -> first answer, wall time seen by the parent, and the
    import+load+first-answer part inside) and peak RSS over a 10,000-comment call (VmHWM of the
    child: ru_maxrss would carry the parent's peak over fork+exec on Linux)."""
    rng = np.random.default_rng(1)
    batch = [texts[i].replace("\n", " ") for i in rng.integers(0, len(texts), 10_000)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(batch))
        tpath = f.name
    res: dict[str, Any] = {}
    for name, code, arg in (("onnx", RSS_ONNX, str(bundle)), ("sklearn", RSS_SKLEARN, pickle_path)):
        walls, firsts, rss = [], [], []
        for _ in range(3):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code, arg, tpath], capture_output=True,
                               text=True, check=True, cwd=ROOT, timeout=300)
            walls.append(time.perf_counter() - t0)
            first, peak = map(float, r.stdout.split()[-2:])
            firsts.append(first)
            rss.append(peak)
        # cold start proper: a process that only loads and answers one comment
        cold = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code.split("texts =")[0], arg, tpath],
                           capture_output=True, check=True, cwd=ROOT, timeout=120)
            cold.append(time.perf_counter() - t0)
        res[name] = {"cold_start_wall_s": round(min(cold), 3),
                     "import_load_first_answer_s": round(min(firsts), 3),
                     "peak_rss_mb_10k_batch": round(min(rss), 1)}
    os.unlink(tpath)
    return res


# ----------------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(r: dict[str, Any]) -> str:
    q, s, fp = r["quality"], r["speed"], r["fresh_process"]
    t2 = s["threads"]["2"] if "2" in s["threads"] else s["threads"][2]
    t1 = s["threads"]["1"] if "1" in s["threads"] else s["threads"][1]
    lines = [
        START,
        "## Instant lane (bench/instant.py)",
        "",
        f"Bundle `{r['bundle']}`; measured {r['measured_at']} on {r['cpus']} CPUs shared with other "
        f"engineers (1-min load {r['load_before']:.1f} before the run): speed figures are the best of "
        "3 repeats. Full build wall time: " + r.get("build_wall", "see below") + ".",
        "",
        "### Quality (test split, 1,582 comments)",
        "",
        ("Scoring, the same for every model (model_build/metrics.py): the test comments whose truth "
        f"has at least one label ({q['linear']['rows']:,}; pxtextmining's loader drops the others); "
        "all 32 labels, 'Labelling not possible' a label like any other; macro-F1 = mean of the 32 "
        "per-label F1 (zero_division=0, as pxtextmining's classification report). Each model's "
        "labels are what it serves: twolane's rule book (unlabellable or unknown text -> exactly "
        "'Labelling not possible'; top-label fallback), pxtextmining's own post-processing for the "
        f"baseline. The test split has {q['unlabellable_test_rows']} unlabellable comments: the "
        "'labellable only' columns leave them out."),
        "",
        "| model | macro-F1 | micro-F1 | exact acc. | hamming | macro-F1 labellable only | micro-F1 labellable only |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [("linear", "twolane TF-IDF + linear SVM, Platt-scaled (ONNX)"),
             ("xgboost", "twolane TF-IDF + XGBoost (ONNX)"),
             ("ensemble", f"twolane ensemble {r.get('ensemble', 'linear + XGBoost')} (ONNX)")]
    for key, label in names:
        m, lo = q[key], q[key + "_labellable_rows_only"]
        lines.append(f"| {label} | {m['macro_f1']:.3f} | {m['micro_f1']:.3f} | {m['exact_accuracy']:.3f} "
                     f"| {m['hamming_loss']:.4f} | {lo['macro_f1']:.3f} | {lo['micro_f1']:.3f} |")
    if "pxtextmining_svc" in q:
        m = q["pxtextmining_svc"]
        lo = m["labellable_rows_only"]
        lines.append(f"| pxtextmining quick API as served (bench/baseline.py) "
                     f"| {m['macro_f1']:.3f} | {m['micro_f1']:.3f} | {m['exact_accuracy']:.3f} "
                     f"| {m['hamming_loss']:.4f} | {lo['macro_f1']:.3f} | {lo['micro_f1']:.3f} |")
    best = max(q[k]["macro_f1"] for k, _ in names)
    best_micro = max(q[k]["micro_f1"] for k, _ in names)
    d = r["default_model"]
    lines += [
        "",
        (f"Targets, for the default serving model ({d}): macro-F1 >= 0.58: "
         f"{verdict(q[d]['macro_f1'] >= 0.58)} ({q[d]['macro_f1']:.3f}); micro-F1 >= 0.78: "
         f"{verdict(q[d]['micro_f1'] >= 0.78)} ({q[d]['micro_f1']:.3f}); exact match >= 0.68: "
         f"{verdict(q[d]['exact_accuracy'] >= 0.68)} ({q[d]['exact_accuracy']:.3f}). Best of the three: macro "
         f"{best:.3f}, micro {best_micro:.3f} (the ensemble serves "
         f"{s['ensemble_arrays_10000_per_s']:,} comments/s on 10,000-comment batches, arrays, "
         "2 threads). Sentiment (linear head with the lexicon features and the char view, "
         f"{q['sentiment']['rows']} labelled test comments it answers): accuracy "
         f"{q['sentiment']['accuracy']:.3f}, macro-F1 {q['sentiment']['macro_f1']:.3f}; "
         f"hand-written polarity set: {q['polarity_set']['right_side']:.1%} of "
         f"{q['polarity_set']['cases']} on the right side. "
        "Thresholds were tuned on out-of-fold probabilities of the training split only."),
        "",
        "### Speed: ONNX predictor vs the same model in scikit-learn",
        "",
        ("ONNX = `InstantPredictor.predict` (labels + sentiment, pydantic results) and "
        f"`predict_arrays` (numpy only), default model ({d}). scikit-learn = a linear model of "
        "the same shape (TfidfVectorizer + one-vs-rest LogisticRegression + sentiment LR; no "
        "XGBoost, no char view) in memory, for scale."),
        "",
        "| measure | ONNX | scikit-learn | target |",
        "|---|---|---|---|",
        (f"| 1 comment in process, p50 / p99 ms | {s['one_comment']['onnx_p50_ms']} / "
        f"{s['one_comment']['onnx_p99_ms']} | {s['one_comment']['sklearn_p50_ms']} / "
        f"{s['one_comment']['sklearn_p99_ms']} | p50 <= 1 ms: "
        f"{verdict(s['one_comment']['onnx_p50_ms'] <= 1.0)} |"),
    ]
    for n in (1000, 10_000):
        lines.append(
            f"| {n:,}-comment batch, comments/s (2 threads) | predict {t2[f'onnx_predict_{n}_per_s']:,}; "
            f"arrays {t2[f'onnx_arrays_{n}_per_s']:,} | labels+sentiment "
            f"{t2[f'sklearn_labels_sentiment_{n}_per_s']:,}; labels {t2[f'sklearn_labels_{n}_per_s']:,} "
            f"| >= 10,000/s: {verdict(t2[f'onnx_predict_{n}_per_s'] >= 10_000)} |")
        lines.append(
            f"| {n:,}-comment batch, comments/s (1 thread) | predict {t1[f'onnx_predict_{n}_per_s']:,}; "
            f"arrays {t1[f'onnx_arrays_{n}_per_s']:,} | | |")
    o, k = fp["onnx"], fp["sklearn"]
    lines += [
        (f"| peak RSS, fresh process, one 10,000-comment call (MB) | {o['peak_rss_mb_10k_batch']} | "
        f"{k['peak_rss_mb_10k_batch']} | <= 300: {verdict(o['peak_rss_mb_10k_batch'] <= 300)} |"),
        (f"| cold start: fresh interpreter to first answer, wall s | {o['cold_start_wall_s']} | "
        f"{k['cold_start_wall_s']} | <= 0.5: {verdict(o['cold_start_wall_s'] <= 0.5)} |"),
        (f"| of which import + load + first answer, s | {o['import_load_first_answer_s']} | "
        f"{k['import_load_first_answer_s']} | |"),
        "",
        (f"Bundle files: {r['bundle_files']}. The Lambda deployment folder size is measured by the "
        "infra engineer (bench/infra.py)."),
        "",
        "Raw figures: `bench/results/instant.json`.",
        END,
    ]
    return "\n".join(lines)


def write_md(section: str) -> None:
    write_section(START, END, section, MD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "bundles")
    ap.add_argument("--no-baseline", action="store_true", help="skip the slow SVC baseline")
    ap.add_argument("--build-wall", default=None, help="full-build wall time to record, e.g. '6 min 10 s'")
    args = ap.parse_args()

    from model_build.data import DEFAULT_DATA, load_dataset
    from twolane.bundle import InstantEnsemble, read_manifest, resolve_bundle
    from twolane.rules import is_unlabellable

    bundle = resolve_bundle(args.bundle, "instant")
    m = read_manifest(bundle, verify=True)
    load = os.getloadavg()[0]
    texts = [t for t in load_dataset(DEFAULT_DATA).texts if not is_unlabellable(t)]
    print(f"bundle {bundle}", flush=True)
    t0 = time.perf_counter()
    q = quality(bundle, baseline=not args.no_baseline)
    print("quality done", round(time.perf_counter() - t0), "s", flush=True)
    s = speed_in_process(bundle, texts)
    print("speed done", flush=True)
    fp = fresh_process(bundle, s.pop("_sklearn_pickle"), texts)
    ens = m.ensemble
    if not isinstance(ens, InstantEnsemble):
        raise SystemExit(f"{bundle} has no instant ensemble")
    result = {
        "bundle": bundle.name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "load_before": load, "targets": TARGETS,
        "default_model": m.default_model,
        "ensemble": (" + ".join(f"{w:g} {k}" for w, k in zip(ens.weights, ens.members, strict=True))
                     + f", second-label ratio {ens.rule.label_ratio:g}"),
        "bundle_files": ", ".join(f"{f} {(bundle / f).stat().st_size / 1e6:.1f} MB" for f in m.files),
        "build_seconds_in_manifest": m.build.get("build_seconds"),
        "quality": q, "speed": s, "fresh_process": fp,
    }
    if args.build_wall:
        result["build_wall"] = args.build_wall
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    write_md(markdown(json.loads(json.dumps(result, default=str))))
    print(markdown(json.loads(json.dumps(result, default=str))))


if __name__ == "__main__":
    main()
