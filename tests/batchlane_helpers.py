"""Helpers for the batch-lane tests: a moto server on a free 127.0.0.1 port with the process's
AWS settings pointed at it, per-test queue/topic names, and waiting."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twolane.settings import Settings, get_settings

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-2",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on a free port; point TWOLANE_AWS_ENDPOINT_URL (and boto3) at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    env = {**AWS_ENV, "TWOLANE_AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        server.stop()


def lane_settings(tmp: Path, bundles: Path, **kw: Any) -> Settings:
    """Settings for one test: its own queues/topics (moto is shared by a module) and state dir."""
    tag = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "bundles": bundles, "state_dir": tmp / "state", "batch_queue": f"inv-{tag}",
        "batch_success_topic": f"ok-{tag}", "batch_error_topic": f"err-{tag}",
        "batch_notification_queue": f"note-{tag}", "batch_idle_seconds": 30.0,
        "aws_endpoint_url": os.environ["TWOLANE_AWS_ENDPOINT_URL"],
    }
    base.update(kw)
    return Settings(**base)


def bucket_ready(settings: Settings) -> None:
    from twolane.aws import client

    s3 = client("s3")
    try:
        s3.head_bucket(Bucket=settings.bucket)
    except Exception:  # noqa: BLE001
        s3.create_bucket(Bucket=settings.bucket,
                         CreateBucketConfiguration={"LocationConstraint": settings.aws_region})


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "",
             every: float = 0.05) -> Any:
    """`check()`'s first truthy answer, asked every `every` s for at most `timeout` s (a bound,
    not a sleep: it returns as soon as the condition holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")


def stop_up(proc: Any) -> int | None:
    """Stop a `twolane up` subprocess (SIGINT, then kill after 60 s); its exit code, or None when
    it had to be killed. Never raises, so a slow stop cannot hide a test's own first error."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        return int(proc.wait(60))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        return None


def poll_job(client: Any, url: str, timeout: float = 60.0) -> Any:
    """GET the job until it is no longer 202; returns the first non-202 response."""
    def done() -> Any:
        r = client.get(url)
        return r if r.status_code != 202 else None

    return wait_for(done, timeout, every=0.1)


# A small sharded job: seven real-looking comments (one unlabellable), in input order.
TEXTS = ["The nurses were kind and explained everything clearly",
         "Waited four hours in A&E and parking was impossible",
         "n/a", "Food was cold", "Lovely staff on the ward", "Nobody answered the phone",
         "Clean and calm"]
ITEMS = [{"comment_id": f"c{i}", "comment_text": t, "question_type": "nonspecific"}
         for i, t in enumerate(TEXTS)]


def run_sharded_job(api: Any, store: Any, batch_bundle: Path, shards: int,
                    timeout: float) -> str:
    """POST the seven-comment job to /v1/jobs, check it was split into `shards`, collect it:
    results once, in input order, equal to the batch predictor's own labels, then 410.
    Returns the job id."""
    from twolane.predictors.batch import BatchPredictor

    r = api.post("/v1/jobs", json={"items": ITEMS, "target": "ms"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    rec = store.get(job_id)
    assert rec is not None and len(rec.shards) == shards
    done = poll_job(api, r.json()["results_url"], timeout=timeout)
    assert done.status_code == 200, done.text
    body = done.json()
    assert [x["comment_id"] for x in body["results"]] == [i["comment_id"] for i in ITEMS]
    direct = BatchPredictor.from_bundle(batch_bundle).predict_texts(
        TEXTS, ["nonspecific"] * len(TEXTS), target="ms", ids=[i["comment_id"] for i in ITEMS])
    assert [x["labels"] for x in body["results"]] == [p.labels for p in direct]
    assert api.get(r.json()["results_url"]).status_code == 410
    return str(job_id)


def local_s3_client(state_dir: Path, port: int) -> Any:
    """A boto3 S3 client for a `twolane up`'s local S3, signed with the keys it keeps in its state
    folder (it refuses any other: issue 22)."""
    import boto3

    from local_stack.s3local import credentials_for

    creds, _ = credentials_for(state_dir)
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-2",
                        aws_access_key_id=creds.access_key_id,
                        aws_secret_access_key=creds.secret_access_key)


@contextmanager
def mocked_s3(bucket: str, region: str = "eu-west-2") -> Iterator[Any]:
    """An in-process moto S3 (mock_aws) with `bucket` made, and a client of it; fake credentials
    and no endpoint override while it lasts."""
    import boto3
    import pytest
    from moto import mock_aws

    mp = pytest.MonkeyPatch()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        mp.setenv(k, "testing")
    mp.setenv("AWS_DEFAULT_REGION", region)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    try:
        with mock_aws():
            c = boto3.client("s3", region_name=region)
            c.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            yield c
    finally:
        mp.undo()


def start_up(tmp_path: Path, env: dict[str, str], port: int, mport: int, log: Path, *,
             batch: bool = False, bound_s: float = 180) -> Any:
    """`twolane up` (with the batch lane when `batch`) in a process of its own, in `tmp_path`
    with `env`, its output appended to `log`; returns the process once GET /health answers 200
    (up to `bound_s`). Raises AssertionError, with the log, when it exits first."""
    import subprocess
    import sys

    import httpx

    code = f"from local_stack.stack import up; up(port={port}, batch={batch}, moto_port={mport})"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"up exited: {log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, bound_s, "the API", every=0.2)
    except BaseException:
        stop_up(proc)
        raise
    return proc
