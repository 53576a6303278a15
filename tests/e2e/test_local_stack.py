"""The local stack end to end: `up` in a subprocess on free ports (no batch lane), a real HTTP
request, a file through moto's S3 inbox and one through the local ./dropbox folder, clean stop."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import httpx
import pytest
from batchlane_helpers import local_s3_client, start_up, stop_up, wait_for

from local_stack.stack import free_port, predict_file
from twolane.rules import LABELLING_NOT_POSSIBLE

REPO = Path(__file__).resolve().parents[2]
CSV = (b"comment_id,comment_text,question_type\n"
       b"1,The nurses were kind and explained everything clearly,what_good\n"
       b"2,n/a,nonspecific\n")


def test_up_serves_api_and_drop_folder(instant_bundle: Path, tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    # A clean environment: nothing another test (or the caller's shell) set for twolane or AWS
    # leaks in; its own state folder and bucket, so nothing is shared with other tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOLANE_", "AWS_"))}
    env.update(TWOLANE_INSTANT_BUNDLE=str(instant_bundle), TWOLANE_POLL_SECONDS="0.2",
               TWOLANE_DROP_SETTLE_SECONDS="1",
               TWOLANE_BUCKET="stack-test", TWOLANE_STATE_DIR=str(tmp_path / "state"),
               TWOLANE_BUNDLES=str(tmp_path / "bundles"), PYTHONUNBUFFERED="1")
    log = tmp_path / "up.log"
    proc = start_up(tmp_path, env, port, mport, log)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", headers={"accept": "text/html"}, timeout=5)
        assert page.status_code == 200 and "page/app.js" in page.text  # the web page
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"items": [
            {"comment_id": "x", "comment_text": "Parking was awful"}]}, timeout=5)
        assert r.status_code == 200 and r.json()["results"][0]["comment_id"] == "x"

        s3 = local_s3_client(tmp_path / "state", mport)  # the stack's own keys (issue 22)
        s3.put_object(Bucket="stack-test", Key="inbox/from s3.csv", Body=CSV)

        def result() -> bytes | None:
            try:
                return s3.get_object(Bucket="stack-test", Key="outbox/from s3.csv")["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None

        rows = list(csv.DictReader(io.StringIO(wait_for(result, 120, "outbox result").decode())))
        assert [r["comment_id"] for r in rows] == ["1", "2"]
        assert rows[1]["labels"] == LABELLING_NOT_POSSIBLE
        # the drop folder writes outbox/ first, then deletes the inbox file: wait for both
        wait_for(lambda: "inbox/from s3.csv" not in {o["Key"] for o in s3.list_objects_v2(
            Bucket="stack-test").get("Contents", [])}, 60, "inbox/from s3.csv deleted")

        # The local folder: the example file the stack writes, dropped into ./dropbox/inbox/.
        example = tmp_path / "dropbox" / "example.csv"
        assert example.is_file()
        (tmp_path / "dropbox" / "inbox" / "mine.csv").write_bytes(example.read_bytes())
        local = tmp_path / "dropbox" / "outbox" / "mine.csv"
        wait_for(local.is_file, 120, "dropbox/outbox/mine.csv")
        # the input leaves inbox/ only once its result is there (issue 22): wait for that too
        wait_for(lambda: not (tmp_path / "dropbox" / "inbox" / "mine.csv").exists(), 60,
                 "dropbox/inbox/mine.csv removed")
        assert local.read_text().startswith("comment_id,labels,sentiment,sentiment_label")
    finally:
        # Stop it whatever happened; a slow stop must not hide the test's own first error.
        rc = stop_up(proc)
    text = log.read_text()
    assert rc == 0, f"up did not stop cleanly (exit {rc}):\n{text}"
    assert "twolane is running" in text and f"http://127.0.0.1:{port}/v1/predict" in text
    assert f"Web page     http://127.0.0.1:{port}/ " in text
    assert "Stopped." in text


def test_predict_file(instant_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "comments.csv"
    src.write_bytes(CSV)
    out = predict_file(src, bundle=instant_bundle)
    assert out == tmp_path / "comments.labels.csv"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["comment_id"] for r in rows] == ["1", "2"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,text\n1,x\n")
    with pytest.raises(SystemExit):
        predict_file(bad, bundle=instant_bundle)


def test_batch_lane_failure_does_not_stop_instant_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    from local_stack import stack
    from twolane.settings import Settings

    monkeypatch.setitem(sys.modules, "local_stack.batch_lane", None)  # import fails
    assert stack._start_batch(Settings()) is None


def test_up_without_the_batch_lane_tells_the_api_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """`twolane up --no-batch`: the API answers 503 for jobs (TWOLANE_BATCH_ENABLED=0, as a
    deployment without the batch lane), never a 202 for a job nothing will run."""
    from typer.testing import CliRunner

    import local_stack.stack
    from twolane.settings import get_settings
    from twolane_cli.app import app

    seen: list[tuple[bool, bool]] = []
    monkeypatch.setattr(local_stack.stack, "up", lambda **kw: seen.append(
        (kw["batch"], get_settings().batch_enabled)))
    # setenv (not delenv of an absent name, which records nothing): monkeypatch then restores
    # the environment as it was, whatever the command set in os.environ
    monkeypatch.setenv("TWOLANE_BATCH_ENABLED", "1")
    try:
        assert CliRunner().invoke(app, ["up", "--no-batch"]).exit_code == 0
    finally:
        get_settings.cache_clear()
    assert seen == [(False, False)]


@pytest.mark.parametrize("command", [["build", "cascade"], ["recommend", "--env", "none"]])
def test_commands_without_a_bundle_refuse_in_one_line(command: list[str], tmp_path: Path) -> None:
    """A new user running these before any build gets one line and exit 2, not a traceback."""
    import subprocess

    env = {**os.environ, "TWOLANE_BUNDLES": str(tmp_path / "bundles")}
    run = subprocess.run([sys.executable, "-m", "twolane_cli", *command], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 2, run.stderr
    assert "bundle" in run.stderr and "twolane build" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 3  # one reason (rich may wrap it)
