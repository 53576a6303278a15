"""The local async runner: SageMaker's async semantics around the real container process.
Notifications reach the job store only through SNS -> SQS -> the notification handler; the
container is killed mid-job (retried, or failed with a reason: nothing lost); it scales to zero
after idling and starts again for the next job."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server, wait_for

from local_stack.batch_lane import notifications_lambda
from local_stack.invoker import LocalInvoker
from local_stack.runner import AsyncRunner
from twolane.jobs.store import JobRecord, S3JobStore, now_iso

ITEMS = [
    {"comment_id": "r1", "comment_text": "Lovely staff, very caring on the ward"},
    {"comment_id": "r2", "comment_text": "Appointment letters arrived after the appointment date"},
    {"comment_id": "r3", "comment_text": ""},
]


@pytest.fixture(scope="module")
def moto() -> Any:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def lane(moto: str, tmp_path: Path, batch_bundle: Path, request: pytest.FixtureRequest) -> Any:
    """(settings, store, invoker, make_runner); every runner made is stopped after the test."""
    from twolane.aws import client

    runners: list[AsyncRunner] = []

    def make_runner(**kw: Any) -> AsyncRunner:
        settings = kw.pop("settings")
        kw.setdefault("notify", notifications_lambda)
        r = AsyncRunner(settings, lambda: batch_bundle, **kw).start()
        runners.append(r)
        return r

    def make(**settings_kw: Any) -> tuple[Any, S3JobStore, LocalInvoker]:
        settings = lane_settings(tmp_path, batch_bundle, **settings_kw)
        bucket_ready(settings)
        return settings, S3JobStore(client("s3"), settings.bucket), LocalInvoker(settings)

    yield make, make_runner
    for r in runners:
        r.stop()


def submit(store: S3JobStore, invoker: LocalInvoker, items: list[dict[str, Any]] = ITEMS) -> JobRecord:
    """What POST /v1/jobs does: input + record in S3, then invoke."""
    jid = uuid.uuid4().hex
    rec = JobRecord(job_id=jid, target="ms", items=len(items), input_location=store.input_location(jid),
                    created_at=now_iso(), updated_at=now_iso())
    store.create(rec, json.dumps({"items": items, "target": "ms"}).encode())
    inv = invoker.invoke(input_location=rec.input_location, inference_id=jid, kind="classify")
    return store.update(jid, lambda r: r.model_copy(update={
        "output_location": inv.output_location, "failure_location": inv.failure_location}))


def status_of(store: S3JobStore, job_id: str) -> str:
    return store.get(job_id).status  # the record only; no refresh from S3 objects


def test_notifications_complete_the_job(lane: Any) -> None:
    make, make_runner = lane
    settings, store, invoker = make()
    runner = make_runner(settings=settings)
    rec = submit(store, invoker)
    # Only the SNS -> SQS -> handler path moves the record (nothing here looks at the output).
    wait_for(lambda: status_of(store, rec.job_id) == "succeeded", timeout=60)
    out = json.loads(store.read(rec.output_location))
    assert [r["comment_id"] for r in out["results"]] == ["r1", "r2", "r3"]
    assert not store.exists(rec.input_location)
    assert runner.stats.succeeded == 1 and runner.stats.failed == 0


def test_container_killed_mid_job_is_retried(lane: Any) -> None:
    make, make_runner = lane
    settings, store, invoker = make(batch_max_attempts=2)
    runner = make_runner(settings=settings, container_env={"TWOLANE_SERVE_DELAY_S": "1.5"})
    rec = submit(store, invoker)
    pid = wait_for(lambda: runner.in_flight == 1 and runner.container_pid(), timeout=60)
    time.sleep(0.5)  # the invocation is inside the container now (it sleeps 1.5 s first)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status_of(store, rec.job_id) != "pending", timeout=60)
    assert status_of(store, rec.job_id) == "succeeded"
    assert runner.stats.retries == 1 and runner.stats.starts == 2
    assert runner.container_pid() not in (None, pid)
    out = json.loads(store.read(rec.output_location))
    assert [r["comment_id"] for r in out["results"]] == ["r1", "r2", "r3"]


def test_container_killed_without_retries_fails_with_reason(lane: Any) -> None:
    make, make_runner = lane
    settings, store, invoker = make(batch_max_attempts=1)
    runner = make_runner(settings=settings, container_env={"TWOLANE_SERVE_DELAY_S": "1.5"})
    rec = submit(store, invoker)
    pid = wait_for(lambda: runner.in_flight == 1 and runner.container_pid(), timeout=60)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status_of(store, rec.job_id) != "pending", timeout=60)
    got = store.get(rec.job_id)
    assert got.status == "failed"
    assert "container exited (code -9) during the invocation" in got.error
    assert "gave up after 1 attempt" in got.error
    assert not store.exists(rec.input_location)  # no text left behind either way
    # The queue message is gone (answered), not waiting to be redelivered.
    sqs = invoker.sqs
    attrs = sqs.get_queue_attributes(QueueUrl=invoker.queue_url(), AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_scales_to_zero_and_back(lane: Any) -> None:
    make, make_runner = lane
    settings, store, invoker = make(batch_idle_seconds=1.0)
    runner = make_runner(settings=settings)
    assert runner.container is None  # nothing runs before the first job
    first = submit(store, invoker)
    wait_for(lambda: status_of(store, first.job_id) == "succeeded", timeout=60)
    assert runner.stats.starts == 1
    pid = runner.container_pid()
    wait_for(lambda: runner.container is None, timeout=10)  # idle for 1 s: stopped
    assert runner.stats.stops == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    second = submit(store, invoker)
    wait_for(lambda: status_of(store, second.job_id) == "succeeded", timeout=60)
    assert runner.stats.starts == 2 and len(runner.stats.start_seconds) == 2


def test_bad_body_becomes_a_failure_with_the_containers_reason(lane: Any) -> None:
    make, make_runner = lane
    settings, store, invoker = make()
    make_runner(settings=settings)
    rec = submit(store, invoker, items=[{"comment_id": "x", "text": "wrong field"}])
    wait_for(lambda: status_of(store, rec.job_id) == "failed", timeout=60)
    assert store.get(rec.job_id).error == "invalid request: items.0.text: Extra inputs are not permitted"


def test_start_batch_lane_as_twolane_up_does(lane: Any, tmp_path: Path, batch_bundle: Path) -> None:
    from local_stack.batch_lane import start_batch_lane

    make, _ = lane
    settings, store, invoker = make(batch_bundle=batch_bundle)
    handle = start_batch_lane(settings, build_if_missing=False)
    try:
        assert handle.build is None and "batch lane ready" in handle.message
        assert handle.runner.container is None  # nothing runs until there is work
        rec = submit(store, invoker)
        wait_for(lambda: status_of(store, rec.job_id) == "succeeded", timeout=60)
    finally:
        handle.stop()
    assert handle.runner.container is None
    assert (settings.state_dir / "logs" / "batch-container.log").is_file()
