"""Drift (twolane.drift, `twolane drift`): same-source comments pass, another domain is flagged.

Real data: the small test bundle (conftest `instant_bundle`) is built on the first 800 rows of
the NHS file's split (model_build.data.Dataset.head; NEAS: patient transport and
see-and-convey, "FFT Why?" / "How could we improve?"), and its drift reference is its own
test split (160 of those rows). "Held-out same-source" comments are rows the bundle never
saw, drawn from the same service and question cells in the same proportions as the seen rows
(the other rows hold those cells in other proportions, and other services and a second trust:
real shifts, not what these tests ask). The other domain is data/drift/product_reviews.csv
(hand-written consumer reviews, see its README), given the same question types.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twolane import drift
from twolane.bundle import read_manifest
from twolane.predictors.instant import InstantPredictor
from twolane.rules import question_type_of

ROOT = Path(__file__).resolve().parents[2]
NHS = ROOT / "data" / "nhs-patient-feedback" / "v6framework_230831.csv"
REVIEWS = ROOT / "data" / "drift" / "product_reviews.csv"
SEEN_ROWS = 800  # conftest's instant_bundle is built on the first 800 rows


@lru_cache(maxsize=1)
def _nhs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows the small bundle saw, rows it never saw): Dataset.head(800) takes the first 640
    training and first 160 test rows of the file's split."""
    from model_build.data import DEFAULT_DATA, load_dataset

    d = pd.read_csv(NHS, dtype=str, keep_default_na=False)
    d["cell"] = d["Service type 1"] + " | " + d["FFT question"]
    seen_ids = set(load_dataset(DEFAULT_DATA).head(SEEN_ROWS).ids)
    seen = d["Comment ID"].isin(seen_ids)
    assert seen.sum() == SEEN_ROWS
    return d[seen], d[~seen]


def held_out(n: int, seed: int) -> list[tuple[str, str]]:
    """n (text, question) rows the bundle never saw, in the seen rows' service x question mix."""
    seen, rest = _nhs()
    share = seen["cell"].value_counts(normalize=True)
    rng = np.random.default_rng(seed)
    want = {c: int(round(n * s)) for c, s in share.items()}
    out: list[tuple[str, str]] = []
    for cell, k in want.items():
        pool = rest[rest["cell"] == cell]
        take = rng.choice(len(pool), size=k, replace=False)
        out += list(zip(pool["FFT answer"].iloc[take], pool["FFT question"].iloc[take], strict=True))
    rng.shuffle(out)  # type: ignore[arg-type]
    return out[:n]


def reviews(n: int, seed: int, questions: list[str]) -> list[tuple[str, str]]:
    with REVIEWS.open(encoding="utf-8") as f:
        texts = [r["comment_text"] for r in csv.DictReader(f)]
    rng = np.random.default_rng(seed)
    take = rng.choice(len(texts), size=n, replace=False)
    return [(texts[i], questions[j % len(questions)]) for j, i in enumerate(take)]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["comment_id", "comment_text", "question_type"])
        for i, (t, q) in enumerate(rows):
            w.writerow([f"c{i}", t, q])
    return path


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> InstantPredictor:
    return InstantPredictor.from_bundle(instant_bundle)


def check(predictor: InstantPredictor, rows: list[tuple[str, str]]) -> drift.DriftReport:
    return drift.checker(predictor.bundle_dir).check(
        predictor, [t for t, _ in rows], [q for _, q in rows])


# --------------------------------------------------------------------------- statistics
def test_chi2_sf_matches_known_quantiles() -> None:
    # 5 % critical values of the chi-square distribution (any statistics table)
    for dof, crit in [(1, 3.841), (2, 5.991), (3, 7.815), (4, 9.488), (9, 16.919), (30, 43.773)]:
        assert drift.chi2_sf(crit, dof) == pytest.approx(0.05, abs=2e-4)
    assert drift.chi2_sf(0.0, 3) == 1.0
    assert drift.chi2_sf(1e6, 7) == 0.0


def test_chi2_sf_matches_scipy() -> None:
    from scipy.stats import chi2

    for dof in (1, 2, 5, 8, 13, 31):
        for x in (0.5, 3.0, 10.0, 40.0, 90.0):
            assert drift.chi2_sf(x, dof) == pytest.approx(chi2.sf(x, dof), rel=1e-9, abs=1e-300)


def test_holm_adjusts_in_order() -> None:
    assert drift.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert drift.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_two_sample_same_counts_is_no_shift() -> None:
    psi, p = drift.two_sample(np.array([50.0, 30, 20]), np.array([100.0, 60, 40]))
    assert psi == pytest.approx(0.0, abs=1e-3) and p == pytest.approx(1.0)


# --------------------------------------------------------------------------- the bundle
def test_bundle_lists_a_hashed_reference(instant_bundle: Path) -> None:
    m = read_manifest(instant_bundle, verify=True)
    assert drift.REFERENCE_FILE in m.files
    ref = drift.checker(instant_bundle).reference
    assert ref.rows == m.data["test_rows"]
    assert set(ref.signals) == set(drift.SIGNALS)
    assert ref.known_terms and not any("qt_" in t for t in ref.known_terms)


@pytest.mark.parametrize("n", [200, 600])
def test_held_out_same_source_is_not_flagged(predictor: InstantPredictor, n: int) -> None:
    for seed in range(3):
        report = check(predictor, held_out(n, seed))
        assert not report.drifted, {k: (v.psi, v.p_adjusted) for k, v in report.signals.items()}


def test_other_domain_is_flagged(predictor: InstantPredictor) -> None:
    qs = [q for _, q in held_out(200, 0)]
    report = check(predictor, reviews(150, 0, qs))
    assert report.drifted
    assert report.signals["known_share"].drifted  # what the comments say, not their shape
    assert not report.signals["context"].drifted  # same question types given


def test_half_and_half_mix_is_flagged(predictor: InstantPredictor) -> None:
    nhs = held_out(100, 1)
    mixed = nhs + reviews(100, 1, [q for _, q in nhs])
    report = check(predictor, mixed)
    assert report.drifted
    assert report.signals["known_share"].drifted


def test_blank_rows_kept_or_removed_are_not_flagged(predictor: InstantPredictor) -> None:
    """Issue 31: an export of the same stream without its blank and junk rows is compared on
    its comments (junk_share alarms only on MORE junk), so neither file is flagged."""
    from twolane.rules import is_unlabellable

    for seed in range(3):
        rows = held_out(600, 10 + seed)
        kept = check(predictor, rows)
        removed = check(predictor, [r for r in rows if not is_unlabellable(r[0])])
        for report in (kept, removed):
            assert not report.drifted, {k: (v.psi, v.p_adjusted) for k, v in report.signals.items()}
        assert removed.signals["junk_share"].psi is not None  # tested, and one-sided
        assert kept.signals["length"].n == removed.signals["length"].n  # labellable text only


def test_more_junk_is_drift_of_its_own(predictor: InstantPredictor) -> None:
    rows = held_out(300, 4)
    junk = [("n/a", q) for _, q in rows[:100]] + [("", q) for _, q in rows[100:200]]
    report = check(predictor, rows + junk)
    assert report.drifted and report.signals["junk_share"].drifted
    others = {k for k, v in report.signals.items() if v.drifted} - {"junk_share"}
    assert not others, others  # the blanks change no other signal


def test_a_format_1_reference_is_compared_as_built(predictor: InstantPredictor) -> None:
    """A reference of a bundle built before issue 31 (every row in every signal, no
    junk_share) is compared with every row of the file, as it was built."""
    check_ = drift.checker(predictor.bundle_dir)
    ref = check_.reference
    assert ref.format == drift.FORMAT and "junk_share" in ref.signals
    test = [(t, q) for t, q in held_out(200, 7)]
    texts, qts = [t for t, _ in test], [q for _, q in test]
    old = drift.reference_from(drift.observe(predictor, texts, qts, check_.known, ref.ngram_max,
                                             labellable_only=False), ref.known_terms, ref.ngram_max, "old")
    assert old.format == 1 and "junk_share" not in old.signals
    report = drift.Checker(old, check_.known).check(predictor, texts, qts)
    assert not report.drifted and report.signals["junk_share"].note == "not in the reference"
    assert report.signals["length"].n == len(texts)  # every row, blanks included


def test_no_reference_means_no_report(predictor: InstantPredictor, tmp_path: Path) -> None:
    class Plain:  # a predictor without a bundle (e.g. a fake): drift is skipped, never an error
        version = "x"

    assert drift.report_for(Plain(), []) is None
    assert drift.report_for(Plain(), [object()]) is None  # type: ignore[list-item]
    with pytest.raises(drift.DriftError):
        drift.checker(tmp_path)


def test_metric_values_name_every_tested_signal(predictor: InstantPredictor) -> None:
    report = check(predictor, held_out(200, 5))
    values = drift.metric_values(report)
    assert values[drift.DRIFTED_METRIC] == 0.0
    assert all(math.isfinite(v) for v in values.values())
    assert drift.METRIC_NAMES["known_share"] in values


# --------------------------------------------------------------------------- the command
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twolane_cli", "drift", *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_cli_json_and_table(instant_bundle: Path, tmp_path: Path) -> None:
    same = write_csv(tmp_path / "same.csv", held_out(200, 7))
    got = _cli(str(same), "--bundle", str(instant_bundle), "--json")
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert body["drifted"] is False and set(body["signals"]) == set(drift.SIGNALS)
    qs = [q for _, q in held_out(120, 7)]
    other = write_csv(tmp_path / "other.csv", reviews(120, 7, qs))
    got = _cli(str(other), "--bundle", str(instant_bundle))
    assert got.returncode == 0, got.stderr
    assert "DRIFTED" in got.stdout and "known_share" in got.stdout


def test_cli_unreadable_input_exits_2(instant_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"just,some\n")
    for args in ([str(bad)], [str(tmp_path / "missing.csv")], [str(tmp_path / "x.pdf")]):
        got = _cli(*args, "--bundle", str(instant_bundle))
        assert got.returncode == 2
        assert len(got.stderr.strip().splitlines()) == 1 and "Traceback" not in got.stderr
    got = _cli(str(bad), "--bundle", str(tmp_path))  # not a bundle
    assert got.returncode == 2 and "Traceback" not in got.stderr


# --------------------------------------------------------------------------- drop folder, API
BUCKET = "twolane-drift-test"


def _emf(out: str) -> list[dict]:
    """The CloudWatch EMF records printed to stdout (one JSON object a line)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_drop_folder_publishes_each_files_drift(predictor: InstantPredictor, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import boto3
    from moto import mock_aws

    from twolane.dropfolder.process import process_object
    from twolane.settings import Settings

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "twolane-dropfolder")  # EMF is for Lambda
    same = write_csv(tmp_path / "same.csv", held_out(200, 11))
    qs = [q for _, q in held_out(120, 11)]
    other = write_csv(tmp_path / "other.csv", reviews(120, 11, qs))
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        outcomes = {}
        for f in (same, other):
            s3.put_object(Bucket=BUCKET, Key=f"inbox/{f.name}", Body=f.read_bytes())
            outcomes[f.name] = process_object(s3, BUCKET, f"inbox/{f.name}", predictor, Settings())
    assert all(o.status == "done" for o in outcomes.values())
    assert outcomes["same.csv"].drift[drift.DRIFTED_METRIC] == 0.0  # type: ignore[index]
    assert outcomes["other.csv"].drift[drift.DRIFTED_METRIC] == 1.0  # type: ignore[index]
    records = _emf(capsys.readouterr().out)
    def one(v: object) -> object:  # powertools writes a metric's values as a list
        return v[0] if isinstance(v, list) and len(v) == 1 else v

    assert [one(r[drift.DRIFTED_METRIC]) for r in records] == [0.0, 1.0]
    for r in records:
        meta = r["_aws"]["CloudWatchMetrics"][0]
        assert meta["Namespace"] == drift.METRIC_NAMESPACE and r["service"] == drift.METRIC_SERVICE
        assert ["service"] in meta["Dimensions"]
        assert drift.METRIC_NAMES["known_share"] in {m["Name"] for m in meta["Metrics"]}
        assert not any(isinstance(v, str) and len(v) > 40 for v in r.values())  # no comment text


def test_api_drift_route(predictor: InstantPredictor) -> None:
    from fastapi.testclient import TestClient

    from twolane.api.app import create_app
    from twolane.settings import Settings

    client = TestClient(create_app(predictor, Settings()), raise_server_exceptions=False)

    def items(rows: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"comment_id": str(i), "comment_text": t, "question_type": question_type_of(q)}
                for i, (t, q) in enumerate(rows)]

    got = client.post("/v1/drift", json={"items": items(held_out(200, 12))})
    assert got.status_code == 200 and got.json()["drifted"] is False
    qs = [q for _, q in held_out(120, 12)]
    got = client.post("/v1/drift", json={"items": items(reviews(120, 12, qs))})
    assert got.status_code == 200 and got.json()["drifted"] is True
    assert got.json()["signals"]["known_share"]["drifted"] is True
    assert client.post("/v1/drift", json={"items": []}).status_code == 422
    assert client.post("/v1/drift", json={"rows": []}).status_code == 422


def test_api_drift_route_without_a_reference_is_501(fake_predictor: object) -> None:
    from fastapi.testclient import TestClient

    from twolane.api.app import create_app
    from twolane.settings import Settings

    client = TestClient(create_app(fake_predictor, Settings()), raise_server_exceptions=False)
    got = client.post("/v1/drift", json={"items": [{"comment_id": "1", "comment_text": "Kind staff"}]})
    assert got.status_code == 501 and "drift reference" in got.json()["detail"]


# --------------------------------------------------------------------------- a team's own data spec
# A bundle built from a non-NHS data spec (conftest `spec_bundle`, tests/spec_helpers.py: drug
# reviews, 7 single labels, three-class sentiment, a `channel` context column): its reference
# and its checks read its own taxonomy, sentiment classes and context column.
def spec_check(spec_bundle: Path, rows: list[tuple[str, str]]) -> drift.DriftReport:
    return drift.checker(spec_bundle).check(
        InstantPredictor.from_bundle(spec_bundle), [t for t, _ in rows], [c for _, c in rows])


def test_spec_bundle_reference_is_in_its_own_taxonomy(spec_bundle: Path) -> None:
    from spec_helpers import CHANNELS

    m = read_manifest(spec_bundle, verify=True)
    assert not m.is_nhs and drift.REFERENCE_FILE in m.files
    ref = drift.checker(spec_bundle).reference
    assert ref.rows == m.data["test_rows"] and set(ref.signals) == set(drift.SIGNALS)
    assert ref.signals["context"].categories == sorted(CHANNELS)  # the channel column's tokens
    assert set(ref.signals["top_label"].categories) <= set(m.labels)
    assert set(ref.signals["sentiment"].categories) <= set(m.sentiment_classes) | {drift.NO_SENTIMENT}
    assert not any("qt_" in t for t in ref.known_terms)


@pytest.mark.parametrize("n", [200, 300])
def test_spec_bundle_held_out_same_source_is_not_flagged(spec_bundle: Path, n: int) -> None:
    from spec_helpers import held_out as spec_held_out

    for seed in range(3):
        report = spec_check(spec_bundle, spec_held_out(n, seed))
        assert not report.drifted, {k: (v.psi, v.p_adjusted) for k, v in report.signals.items()}
        assert all(r.p_value is not None for r in report.signals.values())  # every signal tested


def test_spec_bundle_other_domain_is_flagged(spec_bundle: Path) -> None:
    from spec_helpers import held_out as spec_held_out

    channels = [c for _, c in spec_held_out(150, 21)]
    report = spec_check(spec_bundle, [(t, channels[i]) for i, (t, _) in enumerate(reviews(150, 21, ["x"]))])
    assert report.drifted and report.signals["known_share"].drifted
    assert not report.signals["context"].drifted  # same channel mix given
    mixed = spec_held_out(100, 22) + [(t, c) for (t, _), c in zip(reviews(100, 22, ["x"]), channels, strict=False)]
    assert spec_check(spec_bundle, mixed).signals["known_share"].drifted


def test_spec_bundle_through_the_cli_api_and_drop_folder(spec_bundle: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`twolane drift`, POST /v1/drift and the drop folder's EMF metrics on files with a
    `context` column (the name clients send a context column under)."""
    import boto3
    from fastapi.testclient import TestClient
    from moto import mock_aws
    from spec_helpers import held_out as spec_held_out

    from twolane.api.app import create_app
    from twolane.dropfolder.process import process_object
    from twolane.settings import Settings

    def write(path: Path, rows: list[tuple[str, str]]) -> Path:
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["comment_id", "comment_text", "context"])
            w.writerows((f"c{i}", t, c) for i, (t, c) in enumerate(rows))
        return path

    same_rows = spec_held_out(200, 31)
    channels = [c for _, c in same_rows]
    other_rows = [(t, channels[i]) for i, (t, _) in enumerate(reviews(120, 31, ["x"]))]
    same, other = write(tmp_path / "same.csv", same_rows), write(tmp_path / "other.csv", other_rows)
    got = _cli(str(same), "--bundle", str(spec_bundle), "--json")
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert body["drifted"] is False and body["signals"]["context"]["n"] == 200
    got = _cli(str(other), "--bundle", str(spec_bundle), "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["drifted"] is True

    predictor = InstantPredictor.from_bundle(spec_bundle)
    client = TestClient(create_app(predictor, Settings()), raise_server_exceptions=False)
    for rows, want in ((same_rows, False), (other_rows, True)):
        items = [{"comment_id": str(i), "comment_text": t, "context": c} for i, (t, c) in enumerate(rows)]
        r = client.post("/v1/drift", json={"items": items})
        assert r.status_code == 200 and r.json()["drifted"] is want, r.text
        assert r.json()["signals"]["context"]["n"] == len(rows)

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "twolane-dropfolder")
    capsys.readouterr()
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        for f in (same, other):
            s3.put_object(Bucket=BUCKET, Key=f"inbox/{f.name}", Body=f.read_bytes())
            o = process_object(s3, BUCKET, f"inbox/{f.name}", predictor, Settings())
            assert o.status == "done" and o.drift is not None
            assert o.drift[drift.DRIFTED_METRIC] == (1.0 if f is other else 0.0)
            assert drift.METRIC_NAMES["context"] in o.drift  # the context column was compared
    records = _emf(capsys.readouterr().out)
    assert len(records) == 2 and all(r["service"] == drift.METRIC_SERVICE for r in records)
