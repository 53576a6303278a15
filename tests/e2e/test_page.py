"""The web page for analysts: served at / by the same app (HTML for browsers, pxtextmining's JSON
for API clients), its files (vendored, with licences, relative URLs only), through the Lambda
adapter, and in a real browser: headless Chromium uploads a CSV and an .xlsx of 300 real comments,
labels them on the instant lane (in chunks, with an API key) and on the batch lane (the local
runner and the real serving container on moto), checks the table, the charts, the filters and
both downloads (ids, labels, sentiment; never the text), and the errors a person sees.

The browser tests are skipped, saying why, where Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
import re
import tomllib
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from page_helpers import (
    browser_missing,
    chrome,
    label_file,
    serve,
    wait_for,
    wait_for_download,
    wait_for_outcome,
    write_samples,
)

from model_build.data import question_type
from twolane.api.app import create_app
from twolane.api.routers.page import PAGE_DIR, prefers_html
from twolane.rules import LABELLING_NOT_POSSIBLE
from twolane.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
API_KEY = "page-test-key"


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


@pytest.fixture(scope="module")
def client(predictor: Any) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, Settings())) as c:
        yield c


# --- the page, served -------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "*/*", "application/json",
                                    "application/json, text/plain, */*",
                                    "text/html;q=0.5, application/json"])
def test_root_answers_json_to_api_clients(client: TestClient, accept: str | None) -> None:
    headers = {"accept": accept} if accept is not None else {}
    r = client.get("/", headers=headers)
    assert r.status_code == 200 and r.json() == {"test": "Hello"}  # as pxtextmining's tests expect
    assert r.headers["vary"] == "Accept"


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "text/*, application/json;q=0.5"])
def test_root_answers_the_page_to_browsers(client: TestClient, accept: str) -> None:
    r = client.get("/", headers={"accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="page/app.js"' in r.text
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "script-src 'self'" in csp


def test_accept_header_ranking() -> None:
    assert prefers_html(BROWSER_ACCEPT)
    assert not prefers_html(None) and not prefers_html("") and not prefers_html("*/*")
    assert not prefers_html("text/html;q=0, */*")
    assert not prefers_html("application/json;q=0.9, text/html;q=0.9")  # a tie answers JSON
    assert prefers_html("application/json;q=0.8, text/html")


def page_urls() -> list[str]:
    html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_every_page_url_is_relative_and_served(client: TestClient) -> None:
    urls = page_urls()
    assert "page/app.js" in urls and "page/vendor/chart.umd.min.js" in urls
    for url in urls:
        # Relative (no leading /), so the page works under a path prefix; nothing off this host.
        assert not url.startswith(("/", "http:", "https:", "//")), url
        if url.startswith("data:"):
            continue
        r = client.get("/" + url)
        assert r.status_code == 200, url
    js = (PAGE_DIR / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"""(fetch|call)\([^)]*["'`]/""", js)  # API paths relative too
    assert "https://" not in js and "http://" not in js


def test_vendored_libraries_match_their_readme_and_ship_licences() -> None:
    vendor = PAGE_DIR / "vendor"
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    for js in vendor.glob("*.js"):
        digest = hashlib.sha256(js.read_bytes()).hexdigest()
        row = next(line for line in readme.splitlines() if f"`{js.name}`" in line)
        assert digest in row, f"{js.name} differs from the npm package named in vendor/README.md"
        stem = js.name.removesuffix(".min.js").removesuffix(".umd")
        assert list(vendor.glob(f"{stem}*LICENSE*")), f"no licence file for {js.name}"
    assert (vendor / "fflate.LICENSE").is_file() and (vendor / "saxen.LICENSE").is_file()


def test_page_files_are_package_data() -> None:
    """pyproject's package-data covers every page file, so wheels (the Lambda asset) ship them."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = cfg["tool"]["setuptools"]["package-data"]["twolane.api"]
    api_dir = PAGE_DIR.parent
    for f in PAGE_DIR.rglob("*"):
        if f.is_file():
            rel = f.relative_to(api_dir).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"


def test_limits_and_page_are_open_when_api_keys_are_set(predictor: Any) -> None:
    settings = Settings(api_keys=API_KEY, max_items=7, max_text_chars=900)
    with TestClient(create_app(predictor, settings)) as c:
        assert c.get("/page/limits.json").json() == {"max_items": 7, "max_job_items": 50_000,
                                                      "max_text_chars": 900}
        assert c.get("/", headers={"accept": BROWSER_ACCEPT}).status_code == 200
        assert c.get("/").json() == {"test": "Hello"}
        assert c.get("/page/app.js").status_code == 200
        assert c.post("/v1/predict", json={"items": []}).status_code == 401  # the API is not
        for path in ("/", "/health"):  # uptime checks send HEAD: answered, without a body
            r = c.head(path)
            assert r.status_code == 200 and r.content == b""


def test_page_through_the_lambda_adapter(lambda_module: Callable[[str], ModuleType]) -> None:
    from lambda_http import LambdaContext
    from test_api import http_api_event

    mod = lambda_module("functions.api.handler")
    ctx = LambdaContext()
    r = mod.handler(http_api_event("GET", "/", headers={"accept": BROWSER_ACCEPT}), ctx)
    assert r["statusCode"] == 200 and '<script src="page/app.js"' in r["body"]
    r = mod.handler(http_api_event("GET", "/"), ctx)
    assert r["statusCode"] == 200 and json.loads(r["body"]) == {"test": "Hello"}
    r = mod.handler(http_api_event("GET", "/page/vendor/chart.umd.min.js"), ctx)
    assert r["statusCode"] == 200 and "Chart.js v4" in r["body"][:200]
    r = mod.handler(http_api_event("GET", "/page/limits.json"), ctx)
    assert r["statusCode"] == 200 and json.loads(r["body"])["max_items"] >= 1


# --- in a real browser ------------------------------------------------------------------------

needs_browser = pytest.mark.skipif(browser_missing() is not None,
                                   reason=f"browser test: {browser_missing()}")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    return write_samples(tmp_path_factory.mktemp("page-samples"), n=300)


@pytest.fixture()
def downloads(tmp_path: Path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture()
def driver(downloads: Path) -> Iterator[Any]:
    d = chrome(downloads)
    try:
        yield d
    finally:
        d.quit()


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    """SEVERE browser-console entries (failed loads, CSP violations, uncaught errors)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


TABLE_JS = """
return [...document.querySelectorAll('#results-table tbody tr')].map(tr => ({
  id: tr.cells[0].textContent, text: tr.cells[1].textContent,
  labels: [...tr.cells[2].querySelectorAll('.tag')].map(t => t.textContent),
  sentiment: tr.cells[3].textContent}));
"""
CHART_JS = "const c = Chart.getChart(arguments[0]); return {labels: c.data.labels, " \
           "data: c.data.datasets.map(d => d.data)};"


def expected_predictions(predictor: Any, df: Any) -> dict[str, Any]:
    ids = list(df["Comment ID"])
    preds = predictor.predict_texts(list(df["FFT answer"]),
                              contexts=[question_type(q) for q in df["FFT question"]], ids=ids)
    return dict(zip(ids, preds, strict=False))


def assert_no_comment_text(content: str, df: Any) -> None:
    texts = [t for t in df["FFT answer"] if len(t.strip()) >= 20]
    assert len(texts) > 100
    leaked = [t for t in texts if t in content]
    assert not leaked, f"{len(leaked)} comment texts in a download"


def assert_results_on_page(driver: Any, df: Any, want: dict[str, Any]) -> list[dict[str, Any]]:
    rows = driver.execute_script(TABLE_JS)
    assert [r["id"] for r in rows] == list(df["Comment ID"])  # every comment, in file order
    for r in rows:
        assert r["labels"] == want[r["id"]].labels
        s = want[r["id"]].sentiment
        assert r["sentiment"] == (s.label if s else "")
    texts = dict(zip(df["Comment ID"], df["FFT answer"], strict=False))
    differ = [(r["text"], texts[r["id"]]) for r in rows if r["text"] != texts[r["id"]]]
    assert not differ, differ[:3]  # the text, shown in the browser only
    # Charts: theme counts and the sentiment distribution, from the same results.
    themes = driver.execute_script(CHART_JS, by_id(driver, "chart-themes"))
    counts = Counter(label for p in want.values() for label in p.labels)
    names = [" ".join(t) if isinstance(t, list) else t for t in themes["labels"]]  # wrapped
    assert dict(zip(names, themes["data"][0], strict=False)) == {t: n for t, n in counts.items()
                                                   if t != LABELLING_NOT_POSSIBLE}
    sent = driver.execute_script(CHART_JS, by_id(driver, "chart-sentiment"))
    by_score = Counter(p.sentiment.score for p in want.values() if p.sentiment)
    assert sent["data"][0][:5] == [by_score.get(s, 0) for s in range(1, 6)]
    cross = driver.execute_script(CHART_JS, by_id(driver, "chart-cross"))
    names = {" ".join(t) if isinstance(t, list) else t for t in cross["labels"]}
    assert names == set(counts) - {LABELLING_NOT_POSSIBLE}
    assert by_id(driver, "chart-themes").size["height"] > 100
    return rows


def filter_by_theme(driver: Any, want: dict[str, Any]) -> None:
    from selenium.webdriver.support.ui import Select

    theme, n = Counter(lab for p in want.values() for lab in p.labels
                       if lab != LABELLING_NOT_POSSIBLE).most_common(1)[0]
    Select(by_id(driver, "filter-theme")).select_by_value(theme)
    rows = driver.execute_script(TABLE_JS)
    assert len(rows) == n and all(theme in r["labels"] for r in rows)
    Select(by_id(driver, "filter-sentiment")).select_by_value("neg")
    rows = driver.execute_script(TABLE_JS)
    neg = [i for i, p in want.items() if theme in p.labels and p.sentiment and p.sentiment.score >= 4]
    assert sorted(r["id"] for r in rows) == sorted(neg)
    Select(by_id(driver, "filter-theme")).select_by_value("")
    Select(by_id(driver, "filter-sentiment")).select_by_value("")


def check_csv_download(driver: Any, downloads: Path, df: Any, want: dict[str, Any]) -> None:
    by_id(driver, "dl-csv").click()
    path = wait_for_download(downloads, ".csv")
    assert path.name == "feedback.labels.csv"
    content = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(content.splitlines()))
    assert rows[0] == ["comment_id", "labels", "sentiment", "sentiment_label"]
    assert [r[0] for r in rows[1:]] == list(df["Comment ID"])
    for cid, labels, score, label in rows[1:]:
        p = want[cid]
        assert labels.split("; ") == p.labels
        assert (score, label) == ((str(p.sentiment.score), p.sentiment.label) if p.sentiment
                                  else ("", ""))
    assert_no_comment_text(content, df)


@needs_browser
def test_label_a_csv_on_the_instant_lane(predictor: Any, samples: Any, driver: Any,
                                         downloads: Path) -> None:
    """300 real comments in the data set's own columns; 120 per request, so three requests."""
    from selenium.webdriver.support.ui import Select

    df, csv_path, _ = samples
    want = expected_predictions(predictor, df)
    with serve(create_app(predictor, Settings(max_items=120))) as base:
        driver.get(base)
        by_id(driver, "file").send_keys(str(csv_path))
        wait_for(lambda: by_id(driver, "step-run").is_displayed(), 30, "the columns step")
        assert "300 rows, 4 columns" in by_id(driver, "file-info").text
        picked = {k: Select(by_id(driver, f"col-{k}")).first_selected_option.text
                  for k in ("id", "text", "qt")}
        assert picked == {"id": "Comment ID", "text": "FFT answer", "qt": "FFT question"}
        assert by_id(driver, "run").text == "Label 300 comments"
        by_id(driver, "run").click()
        wait_for_outcome(driver)
        assert by_id(driver, "results").is_displayed(), (by_id(driver, "run-error").text,
                                                         console_errors(driver))
        assert "300 comments from feedback.csv labelled by the instant model " \
               f"{predictor.version}" in by_id(driver, "results-summary").text
        assert_results_on_page(driver, df, want)
        filter_by_theme(driver, want)
        check_csv_download(driver, downloads, df, want)
        assert console_errors(driver) == []


@needs_browser
def test_label_an_xlsx_with_an_api_key(predictor: Any, samples: Any, driver: Any,
                                       downloads: Path) -> None:
    import openpyxl

    df, _, xlsx_path = samples
    want = expected_predictions(predictor, df)
    with serve(create_app(predictor, Settings(api_keys=API_KEY))) as base:
        label_file(driver, base, xlsx_path)
        assert by_id(driver, "key-form").is_displayed()  # 401: the page asks for the key
        assert not by_id(driver, "results").is_displayed()
        by_id(driver, "api-key").send_keys("not-the-key")
        by_id(driver, "key-save").click()
        wait_for(lambda: "not accepted" in by_id(driver, "key-reason").text, 60,
                   "the wrong key to be refused")
        assert "invalid API key" in by_id(driver, "key-reason").text
        by_id(driver, "api-key").clear()
        by_id(driver, "api-key").send_keys(API_KEY)
        by_id(driver, "key-save").click()
        wait_for(lambda: by_id(driver, "results").is_displayed(), 120, "the results")
        assert_results_on_page(driver, df, want)

        by_id(driver, "dl-xlsx").click()
        path = wait_for_download(downloads, ".xlsx")
        assert path.name == "feedback.labels.xlsx"
        with warnings.catch_warnings():  # write-excel-file leaves styles to the reader's defaults
            warnings.filterwarnings("ignore", "Workbook contains no default style")
            book = openpyxl.load_workbook(path)
        assert book.sheetnames == ["results", "themes"]
        rows = [list(r) for r in book["results"].iter_rows(max_col=4, values_only=True)]
        assert rows[0] == ["comment_id", "labels", "sentiment", "sentiment_label"]
        assert [r[0] for r in rows[1:]] == list(df["Comment ID"])
        for cid, labels, score, label in rows[1:]:
            p = want[cid]
            assert labels.split("; ") == p.labels
            assert (score, label) == ((p.sentiment.score, p.sentiment.label) if p.sentiment
                                      else (None, None))
        themes = {r[0]: r[1] for r in list(book["themes"].iter_rows(values_only=True))[1:]}
        counts = Counter(lab for p in want.values() for lab in p.labels)
        assert themes == {t: n for t, n in counts.items() if t != LABELLING_NOT_POSSIBLE}
        cells = " ".join(str(v) for ws in book.worksheets for r in ws.iter_rows(values_only=True)
                         for v in r if v is not None)
        assert_no_comment_text(cells, df)
        assert console_errors(driver, allowed=("401",)) == []


@needs_browser
def test_mistakes_are_explained_in_words(predictor: Any, driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    repeated = tmp_path / "repeated.csv"
    repeated.write_text("id,comment\n1,The staff were lovely\n2,Parking was awful\n1,Too noisy\n",
                        encoding="utf-8")
    not_xlsx = tmp_path / "broken.xlsx"
    not_xlsx.write_text("this is not a workbook", encoding="utf-8")
    with serve(create_app(predictor, Settings())) as base:
        driver.get(base)
        by_id(driver, "file").send_keys(str(not_xlsx))
        wait_for(lambda: by_id(driver, "file-error").is_displayed(), 30, "the file error")
        assert "could not be read as an Excel .xlsx workbook" in by_id(driver, "file-error").text
        assert not by_id(driver, "step-columns").is_displayed()

        driver.get(base)
        by_id(driver, "file").send_keys(str(repeated))
        wait_for(lambda: by_id(driver, "columns-error").is_displayed(), 30, "the column check")
        assert by_id(driver, "columns-error").text.startswith(
            'Comment ids must be unique; repeated: "1".')
        assert not by_id(driver, "run").is_enabled()
        Select(by_id(driver, "col-id")).select_by_value("")  # number the rows instead
        assert not by_id(driver, "columns-error").is_displayed()
        assert by_id(driver, "run").is_enabled() and by_id(driver, "run").text == "Label 3 comments"
        by_id(driver, "run").click()
        wait_for_outcome(driver)
        ids = [r["id"] for r in driver.execute_script(TABLE_JS)]
        assert ids == ["1", "2", "3"]
        assert console_errors(driver) == []


# --- the batch lane, in the browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from batchlane_helpers import moto_server

    with moto_server() as endpoint:
        yield endpoint


def batch_app(predictor: Any, settings: Settings) -> Any:
    from batchlane_helpers import bucket_ready

    from local_stack.invoker import local_job_service

    bucket_ready(settings)
    return create_app(predictor, settings, local_job_service(settings))


@needs_browser
def test_batch_lane_shows_why_it_cannot_take_a_job(predictor: Any, moto: str, driver: Any,
                                                   samples: Any, tmp_path: Path) -> None:
    from batchlane_helpers import lane_settings

    settings = lane_settings(tmp_path, tmp_path / "no-bundles")
    log = settings.state_dir / "logs" / "batch-build.log"
    log.parent.mkdir(parents=True)
    log.write_text("training...\n")
    (settings.state_dir / "batch-build.pid").write_text(str(os.getpid()))  # "still building"
    with serve(batch_app(predictor, settings)) as base:
        label_file(driver, base, samples[1], lane="batch")
        error = by_id(driver, "run-error")
        assert error.is_displayed()
        assert error.text == f"Batch model is still building; see {log.name} in the state folder."
        assert not by_id(driver, "results").is_displayed()
        assert console_errors(driver, allowed=("503",)) == []


@needs_browser
def test_label_a_csv_on_the_batch_lane(predictor: Any, moto: str, batch_bundle: Path,
                                       driver: Any, samples: Any, downloads: Path,
                                       tmp_path: Path) -> None:
    """POST v1/jobs -> 202; the page polls results_url (202 while pending) until the 200."""
    from batchlane_helpers import lane_settings

    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner
    from twolane.predictors.batch import BatchPredictor

    df, csv_path, _ = samples
    ids = list(df["Comment ID"])
    batch = BatchPredictor.from_bundle(batch_bundle)
    want = dict(zip(ids, batch.predict_texts(list(df["FFT answer"]),
                                       [question_type(q) for q in df["FFT question"]],
                                       target="ms", ids=ids), strict=False))
    settings = lane_settings(tmp_path, batch_bundle)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda,
                         container_env={"TWOLANE_SERVE_DELAY_S": "1"}).start()
    try:
        with serve(batch_app(predictor, settings)) as base:
            driver.get(base)
            by_id(driver, "file").send_keys(str(csv_path))
            wait_for(lambda: by_id(driver, "step-run").is_displayed(), 30, "the columns step")
            # Record every status line the page shows while it polls.
            driver.execute_script(
                "window.seen = []; const el = document.getElementById('run-status');"
                "new MutationObserver(() => seen.push(el.textContent))"
                ".observe(el, {childList: true, characterData: true, subtree: true});")
            from selenium.webdriver.common.by import By

            driver.find_element(By.CSS_SELECTOR, "input[name=lane][value=batch]").click()
            by_id(driver, "run").click()
            wait_for_outcome(driver, timeout=180)
            assert by_id(driver, "results").is_displayed(), by_id(driver, "run-error").text
            seen = driver.execute_script("return window.seen")
            assert any(s.startswith("Batch job: pending") for s in seen), seen
            assert f"labelled by the batch model {batch.version}" in \
                by_id(driver, "results-summary").text
            assert_results_on_page(driver, df, want)
            check_csv_download(driver, downloads, df, want)
            assert console_errors(driver) == []
    finally:
        runner.stop()


def test_unknown_static_file_is_404(client: TestClient) -> None:
    assert client.get(f"/page/{uuid.uuid4().hex}.js").status_code == 404
    assert client.get("/page/../pyproject.toml").status_code == 404


@needs_browser
def test_label_json_under_a_path_prefix(predictor: Any, samples: Any, driver: Any,
                                        tmp_path: Path) -> None:
    """Behind API Gateway the page may live under a prefix (/prod/): every URL it loads or
    calls is relative, so it works there too. The JSON file uses the standard names."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    df = samples[0]
    items = [{"comment_id": i, "comment_text": t, "question_type": question_type(q)}
             for i, t, q in zip(df["Comment ID"], df["FFT answer"], df["FFT question"], strict=False)]
    path = tmp_path / "feedback.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    want = expected_predictions(predictor, df)
    outer = Starlette(routes=[Mount("/prod", app=create_app(predictor, Settings()))])
    with serve(outer, health="prod/health") as base:
        label_file(driver, base + "prod/", path)
        assert by_id(driver, "results").is_displayed(), by_id(driver, "run-error").text
        assert_results_on_page(driver, df, want)
        assert console_errors(driver) == []


# --- a bundle built from a team's own data spec -------------------------------------------------
RECORD_REQUESTS_JS = """
window.sent = {};
const original = window.fetch;
window.fetch = (url, opts) => {
  const path = new URL(url, document.baseURI).pathname;
  if (opts && opts.body) (window.sent[path] = window.sent[path] || []).push(JSON.parse(opts.body));
  return original(url, opts);
};
"""


def assert_own_columns_step(driver: Any, manifest: Any) -> None:
    """Step 2 and 3 in the bundle's own terms: its column names guessed, its context column
    offered (not "question type"), Batch and Auto greyed out, its labels and classes named."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    picked = {k: Select(by_id(driver, f"col-{k}")).first_selected_option.text
              for k in ("id", "text", "qt")}
    assert picked == {"id": "id", "text": "review", "qt": "channel"}
    assert by_id(driver, "qt-name").text == "Context: channel"
    assert not by_id(driver, "qt-help").is_displayed()
    assert "app, phone, web" in by_id(driver, "context-help").text
    for lane in ("batch", "auto"):
        assert not driver.find_element(By.CSS_SELECTOR, f"input[name=lane][value={lane}]").is_enabled()
    assert manifest.batch_lane_refuses is not None
    assert "not available for this model" in by_id(driver, "lane-note").text
    about = by_id(driver, "model-about").text
    assert "NHS" not in about and all(label in about for label in manifest.labels)
    assert "negative, neutral, positive" in about


def assert_own_results(driver: Any, ids: list[str], want: dict[str, Any], manifest: Any) -> None:
    """The table, charts, filter and summary in the bundle's own labels and sentiment classes."""
    from selenium.webdriver.support.ui import Select

    rows = driver.execute_script(TABLE_JS)
    assert [r["id"] for r in rows] == ids
    for r in rows:
        assert r["labels"] == want[r["id"]].labels
        s = want[r["id"]].sentiment
        assert r["sentiment"] == (s.label if s else "")
    sentiment = driver.execute_script(CHART_JS, by_id(driver, "chart-sentiment"))
    assert sentiment["labels"][:3] == manifest.sentiment_classes  # the bundle's own scale
    by_score = Counter(p.sentiment.score for p in want.values() if p.sentiment)
    assert sentiment["data"][0][:3] == [by_score.get(s, 0) for s in (1, 2, 3)]
    themes = driver.execute_script(CHART_JS, by_id(driver, "chart-themes"))
    counts = Counter(label for p in want.values() for label in p.labels)
    names = [" ".join(t) if isinstance(t, list) else t for t in themes["labels"]]
    assert dict(zip(names, themes["data"][0], strict=True)) == dict(counts)
    options = [o.get_attribute("value") for o in Select(by_id(driver, "filter-sentiment")).options]
    assert options == ["", "1", "2", "3"]  # no NHS "negative or very negative" grouping
    summary = by_id(driver, "results-summary").text
    assert "Sentiment: negative" in summary and "very negative" not in summary


@needs_browser
def test_label_an_own_data_file_in_its_own_taxonomy(spec_bundle: Path, driver: Any, downloads: Path,
                                                    tmp_path: Path) -> None:
    """A bundle built from a team's own data spec (tests/spec_helpers.py: drug reviews, 7
    single labels, negative / neutral / positive, a `channel` context column): the page guesses
    the file's columns by the bundle's own names, sends the channel as each comment's
    `context`, shows the bundle's labels and sentiment classes (never the NHS ones) and offers
    no batch or auto lane (the service refuses them for this bundle)."""
    from spec_helpers import split_rows

    from twolane.predictors.instant import InstantPredictor

    predictor = InstantPredictor.from_bundle(spec_bundle)
    _, rest = split_rows()
    df = rest.head(150)[["id", "condition", "review", "channel"]]  # condition: left alone
    path = tmp_path / "reviews.csv"
    df.to_csv(path, index=False)
    ids = list(df["id"])
    want = dict(zip(ids, predictor.predict_texts(list(df["review"]), list(df["channel"]), ids=ids),
                    strict=True))
    with serve(create_app(predictor, Settings())) as base:
        driver.get(base)
        by_id(driver, "file").send_keys(str(path))
        wait_for(lambda: by_id(driver, "step-run").is_displayed(), 30, "the columns step")
        driver.execute_script(RECORD_REQUESTS_JS)
        assert_own_columns_step(driver, predictor.manifest)
        by_id(driver, "run").click()
        wait_for_outcome(driver)
        assert by_id(driver, "results").is_displayed(), (by_id(driver, "run-error").text,
                                                         console_errors(driver))
        sent = driver.execute_script("return window.sent['/v1/predict']")
        got = [it for body in sent for it in body["items"]]
        assert [it["context"] for it in got] == list(df["channel"])
        assert not any("question_type" in it for it in got)
        assert_own_results(driver, ids, want, predictor.manifest)
        by_id(driver, "dl-csv").click()
        content = wait_for_download(downloads, ".csv").read_text(encoding="utf-8-sig")
        out = list(csv.reader(content.splitlines()))[1:]
        assert [r[0] for r in out] == ids
        assert all(r[3] == (want[r[0]].sentiment.label if want[r[0]].sentiment else "") for r in out)
        assert console_errors(driver) == []


@needs_browser
def test_own_data_file_of_another_domain_is_warned(spec_bundle: Path, driver: Any,
                                                   tmp_path: Path) -> None:
    """The drift warning for an own-data bundle: consumer product reviews sent to the drug
    reviews' bundle (with its channel column) look unlike its training data."""
    from spec_helpers import REVIEWS_OTHER_DOMAIN, split_rows

    from twolane.predictors.instant import InstantPredictor

    channels = list(split_rows()[1]["channel"])
    with REVIEWS_OTHER_DOMAIN.open(encoding="utf-8") as f:
        texts = [r["comment_text"] for r in csv.DictReader(f)][:150]
    other = tmp_path / "products.csv"
    with other.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "channel"])
        w.writerows((f"p{i}", t, c) for i, (t, c) in enumerate(zip(texts, channels, strict=False)))
    with serve(create_app(InstantPredictor.from_bundle(spec_bundle), Settings())) as base:
        label_file(driver, base, other)
        assert by_id(driver, "results").is_displayed(), by_id(driver, "run-error").text
        wait_for(lambda: by_id(driver, "drift-warning").is_displayed(), 60, "the drift warning")
        assert "unlike the comments" in by_id(driver, "drift-warning").text
        assert console_errors(driver) == []
