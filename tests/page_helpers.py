"""Helpers for the web page's browser tests: a real uvicorn server on a free 127.0.0.1 port, headless
Chromium from Debian's packages driven by Selenium (nothing downloaded: Selenium Manager is never
asked), and files of real comments from the NHS data set.

Also a script: `python tests/page_helpers.py --bundle DIR --out docs/web-page.png` labels real
comments on the page with that instant bundle and saves a screenshot (the README's picture).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchlane_helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_HINT = "apt-get install -y chromium chromium-driver (Debian's packages; .ci/run does this)"
DATA = Path(__file__).resolve().parent.parent / "data" / "nhs-patient-feedback" / "v6framework_230831.csv"
# The data set's own column names: the page must guess them (no standard names here).
DATA_COLUMNS = ["Comment ID", "Trust", "FFT question", "FFT answer"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in the [dev] extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            return f"no {path}: {APT_HINT}"
    return None


def chrome(download_dir: Path, width: int = 1280, height: int = 1600) -> Any:
    """Headless Chromium at /usr/bin/chromium through /usr/bin/chromedriver, saving downloads to
    `download_dir`. With the driver's path given, Selenium skips Selenium Manager; SE_OFFLINE
    makes sure it would not download anything even if asked."""
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions",
                "--no-first-run", "--disable-background-networking", "--lang=en-GB"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.execute_cdp_cmd("Page.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def free_port() -> int:
    from local_stack.stack import free_port as fp

    return fp()


@contextmanager
def serve(app: Any, timeout: float = 60.0, health: str = "health") -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a free 127.0.0.1 port; yields its base URL once
    `health` answers (200, 401 or 503), and stops it afterwards."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        try:
            return httpx.get(base + health, timeout=2).status_code in (200, 401, 503)
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout, what=f"the API on {base}")
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


def wait_for_download(folder: Path, suffix: str, timeout: float = 30.0) -> Path:
    """The one finished download ending in `suffix` (Chromium writes *.crdownload first)."""
    def done() -> Path | None:
        found = [p for p in folder.glob(f"*{suffix}") if p.stat().st_size > 0]
        partial = list(folder.glob("*.crdownload"))
        return found[0] if len(found) == 1 and not partial else None

    return wait_for(done, timeout, what=f"a {suffix} download in {folder}")


def sample_comments(n: int = 300, seed: int = 7) -> Any:
    """`n` real comments of the NHS data set (placeholders included), with its column names."""
    import pandas as pd

    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    return df[DATA_COLUMNS].sample(n, random_state=seed).reset_index(drop=True)


def write_samples(folder: Path, n: int = 300) -> tuple[Any, Path, Path]:
    """The sample as a CSV and as an .xlsx (written by openpyxl) under `folder`."""
    df = sample_comments(n)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, xlsx_path = folder / "feedback.csv", folder / "feedback.xlsx"
    df.to_csv(csv_path, index=False)
    df.to_excel(xlsx_path, index=False, sheet_name="comments")
    return df, csv_path, xlsx_path


def label_file(driver: Any, base_url: str, file: Path, lane: str = "instant",
               timeout: float = 120.0) -> None:
    """Open the page, upload `file`, keep the guessed columns, press Label and wait for the
    results (or an error, or the API-key prompt)."""
    from selenium.webdriver.common.by import By

    driver.get(base_url)
    driver.find_element(By.ID, "file").send_keys(str(file))
    wait_for(lambda: driver.find_element(By.ID, "step-run").is_displayed()
               or driver.find_element(By.ID, "file-error").is_displayed(), 30, "the file to load")
    driver.find_element(By.CSS_SELECTOR, f"input[name=lane][value={lane}]").click()
    driver.find_element(By.ID, "run").click()
    wait_for_outcome(driver, timeout)


def wait_for_outcome(driver: Any, timeout: float = 120.0) -> None:
    from selenium.webdriver.common.by import By

    wait_for(lambda: any(driver.find_element(By.ID, i).is_displayed()
                           for i in ("results", "run-error", "key-form")),
               timeout, "results, an error or the API-key prompt")


def screenshot(bundle: Path, out: Path, n: int = 400) -> None:
    """Label `n` real comments on the page with the instant bundle and save a PNG of it."""
    import tempfile

    from twolane.api.app import create_app
    from twolane.predictors.instant import InstantPredictor
    from twolane.settings import Settings

    if reason := browser_missing():
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        _, csv_path, _ = write_samples(Path(tmp), n)
        app = create_app(InstantPredictor.from_bundle(bundle), Settings())
        driver = chrome(Path(tmp), width=1280, height=1000)
        try:
            with serve(app) as base:
                label_file(driver, base, csv_path)
                from selenium.webdriver.common.by import By
                from selenium.webdriver.support.ui import Select

                Select(driver.find_element(By.ID, "filter-sentiment")).select_by_value("neg")
                height = driver.execute_script("window.scrollTo(0, 0);"
                                               "return document.documentElement.scrollHeight")
                driver.set_window_size(1280, min(int(height), 4000))
                driver.execute_script("window.scrollTo(0, 0)")
                out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out))
        finally:
            driver.quit()
    print(f"saved {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    p = argparse.ArgumentParser(description="Screenshot of the web page after labelling real comments.")
    p.add_argument("--bundle", type=Path, required=True, help="an instant bundle (folder)")
    p.add_argument("--out", type=Path, default=Path("docs/web-page.png"))
    p.add_argument("--comments", type=int, default=400)
    a = p.parse_args()
    if shutil.which("chromium") is None and not CHROMIUM.is_file():
        raise SystemExit(f"no Chromium: {APT_HINT}")
    screenshot(a.bundle, a.out, a.comments)
