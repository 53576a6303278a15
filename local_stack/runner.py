"""SageMaker asynchronous-inference semantics on this machine, around the real container process.

What SageMaker does for an async endpoint, and how this runner does the same locally:

* queue: `invoke_endpoint_async` enqueues {InputLocation, InferenceId}; locally
  `local_stack.invoker.LocalInvoker` puts the same fields on an SQS queue (moto), drained here.
* instance: `python sagemaker/serve.py` as a subprocess on a free 127.0.0.1 port, the same file
  the image runs. It starts when the backlog is non-empty (we wait for GET /ping = 200) and is
  stopped after `idle_seconds` with nothing queued or in flight: scale to zero.
* concurrency: at most `max_concurrency` invocations at once per instance
  (MaxConcurrentInvocationsPerInstance).
* scale out: up to `workers` instances (TWOLANE_BATCH_WORKERS), each its own serve.py process on
  its own port. An invocation goes to an idle instance; when there is none and fewer than
  `workers` run, one more is started (SageMaker's backlog-per-instance scaling, simplified), so
  a job split into shards is labelled by several instances at once.
* results: the input object is read from S3 and POSTed to /invocations; a 200 body is written to
  the output location, anything else to the failure location.
* notifications: SageMaker-shaped messages are published to the success / error SNS topics;
  an SQS queue subscribed to both is polled here and each SNS envelope is handed, as a Lambda
  SNS event, to the same handler that runs on AWS (functions/notifications/handler.py).
* faults: if the container dies (or cannot be reached) mid-invocation it is removed, and the
  invocation retried on a fresh instance (started before the next attempt), at most
  `max_attempts` (TWOLANE_BATCH_MAX_ATTEMPTS) attempts charged to each part; then the
  failure object says why. A crash of an instance that was serving several parts at once is
  charged to none of them (which part killed it is not known); each is then retried alone on
  an instance of its own, where a crash is its own, so a part that kills its container ends
  after at most `max_attempts` + 1 runs and the others are not failed with it.
  The queue message is deleted only after an output or failure object exists, so a crash of
  the runner itself loses nothing either (the message comes back after its visibility timeout).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twolane.batchhost.notification import iso_now, sagemaker_notification
from twolane.layout import parse_s3_uri
from twolane.settings import REPO_ROOT, Settings

log = logging.getLogger("twolane.runner")

SERVE_PY = REPO_ROOT / "sagemaker" / "serve.py"
CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ContainerDied(RuntimeError):
    """The serving process exited or stopped answering during an invocation."""


def _exit_code(proc: subprocess.Popen[bytes], wait_s: float = 2.0) -> int | None:
    """The process's exit code, allowing a moment for the kernel to reap a process whose
    connection just dropped; None if it is still running."""
    try:
        return proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return None


class ContainerProcess:
    """One local instance of the serving container: sagemaker/serve.py on a free port."""

    def __init__(self, model_dir: Path, env: dict[str, str], log_path: Path,
                 startup_timeout_s: float = 120.0, command: list[str] | None = None):
        self.model_dir = model_dir
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **env, "SM_MODEL_DIR": str(model_dir),
                    "SAGEMAKER_BIND_TO_PORT": str(self.port), "TWOLANE_SERVE_HOST": "127.0.0.1",
                    "TWOLANE_EXIT_WITH_PARENT": str(os.getpid())}  # even if we are SIGKILLed
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(command or [sys.executable, str(SERVE_PY)], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready(startup_timeout_s)
        except Exception:
            self.stop()
            raise
        self.ready_s = time.perf_counter() - t0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ContainerDied(f"container exited with code {self.proc.returncode} while "
                                    f"starting; see {self.log_path}")
            try:
                status, _ = self.request("GET", "/ping", timeout=2.0)
                if status == 200:
                    return
            except CONNECTION_ERRORS:
                pass
            time.sleep(0.02)
        raise ContainerDied(f"container did not answer /ping within {timeout_s:.0f} s; "
                            f"see {self.log_path}")

    def request(self, method: str, path: str, body: bytes | None = None,
                timeout: float = 900.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self, grace_s: float = 5.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class RunnerStats:
    starts: int = 0
    stops: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    start_seconds: list[float] = field(default_factory=list)  # backlog seen -> /ping 200


def sns_lambda_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """An SNS envelope (as SQS receives it) in the shape SNS hands a Lambda."""
    return {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId", str(uuid.uuid4())),
            "TopicArn": envelope.get("TopicArn"),
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message"),
            "Timestamp": envelope.get("Timestamp", iso_now()),
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", ""),
            "SigningCertUrl": envelope.get("SigningCertURL", ""),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
            "MessageAttributes": envelope.get("MessageAttributes", {}),
        },
    }]}


class AsyncRunner:
    """Drains the local invocation queue through the container; see the module docstring."""

    def __init__(  # noqa: PLR0913 (keyword-only options, all defaulted but notify)
        self,
        settings: Settings,
        model_dir: Callable[[], Path | None],
        *,
        s3: Any = None,
        sqs: Any = None,
        sns: Any = None,
        container_env: dict[str, str] | None = None,
        notify: Callable[[dict[str, Any]], Any] | None,
        idle_seconds: float | None = None,
        max_concurrency: int | None = None,
        max_attempts: int | None = None,
        poll_wait_s: int = 1,
        workers: int | None = None,
        queue: str | None = None,
        command: list[str] | None = None,
        relay: bool = True,
        name: str = "batch",
    ):
        """`queue`, `command`, `relay`, `name`: another endpoint on the same runner code (the LLM
        lane): its own invocation queue and container command, the batch lane's topics (their
        relay started only by the runner that has `relay`), logs in logs/<name>-container.log."""
        from twolane.aws import client

        self.settings = settings
        self.model_dir = model_dir
        self.s3 = s3 or client("s3")
        self.sqs = sqs or client("sqs")
        self.sns = sns or client("sns")
        self.container_env = dict(container_env or {})
        if settings.generation_model and "TWOLANE_GENERATION_MODEL" not in self.container_env:
            self.container_env["TWOLANE_GENERATION_MODEL"] = settings.generation_model
        self.relay = NotificationRelay(settings, sqs=self.sqs, sns=self.sns, notify=notify,
                                       poll_wait_s=poll_wait_s)
        self.idle_seconds = idle_seconds if idle_seconds is not None else settings.batch_idle_seconds
        self.max_concurrency = max_concurrency or settings.batch_max_concurrency
        self.max_attempts = max_attempts or settings.batch_max_attempts
        self.workers = workers or settings.batch_workers
        self.timeout_s = settings.batch_invocation_timeout_s
        self.poll_wait_s = poll_wait_s
        self.log_path = Path(settings.state_dir) / "logs" / f"{name}-container.log"
        self.queue = queue or settings.batch_queue
        self.command = command
        self.run_relay = relay
        self.stats = RunnerStats()

        self.containers: list[ContainerProcess] = []  # running instances (at most `workers`)
        self._load: dict[int, int] = {}  # container pid -> invocations it is serving
        self._serving: dict[int, set[str]] = {}  # container pid -> inference ids on it now
        self._shared: set[str] = set()  # inference ids whose attempt shared an instance
        self._starting = 0  # instances being started (counted against `workers`)
        self._lock = threading.Lock()  # the container list, loads and the in-flight count
        self._started = threading.Condition(self._lock)
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(self.max_concurrency * self.workers,
                                        thread_name_prefix="invocation")

    # --- wiring: queues and topics (idempotent, like `cdk deploy` on AWS)

    def setup(self) -> None:
        self.s3_bucket_ready()
        self.queue_url = self.sqs.create_queue(QueueName=self.queue)["QueueUrl"]
        visibility = str(int(self.timeout_s * self.max_attempts + 120))
        self.sqs.set_queue_attributes(QueueUrl=self.queue_url,
                                      Attributes={"VisibilityTimeout": visibility})
        self.relay.setup()

    @property
    def success_arn(self) -> str:
        return self.relay.success_arn

    @property
    def error_arn(self) -> str:
        return self.relay.error_arn

    def s3_bucket_ready(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.settings.bucket)
        except Exception:  # noqa: BLE001 (absent or not ours: create it)
            kw: dict[str, Any] = {}
            if self.settings.aws_region != "us-east-1":
                kw["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.aws_region}
            self.s3.create_bucket(Bucket=self.settings.bucket, **kw)

    def start(self) -> AsyncRunner:
        self.setup()
        if self.run_relay:
            self.relay.start()
        for target, name in ((self._dispatch_loop, "dispatch"), (self._idle_loop, "idle")):
            t = threading.Thread(target=target, name=f"runner-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.poll_wait_s + 5)
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.relay.stop()
        with self._lock:
            self._stop_container()

    def alive(self) -> bool:
        """True while the runner's threads (queue, idle watch, its notification relay) run."""
        return (bool(self._threads) and all(t.is_alive() for t in self._threads)
                and (not self.run_relay or self.relay.alive()))

    # --- state

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def container(self) -> ContainerProcess | None:
        """The first running instance (None when scaled to zero)."""
        with self._lock:
            alive = [c for c in self.containers if c.alive()]
        return alive[0] if alive else None

    def container_pid(self) -> int | None:
        c = self.container
        return c.pid if c is not None else None

    def container_pids(self) -> list[int]:
        """Pids of every running instance."""
        with self._lock:
            return [c.pid for c in self.containers if c.alive()]

    # --- instances: start on demand (up to `workers`), stop when idle

    def _acquire(self, inference_id: str = "", solo: bool = False) -> ContainerProcess:
        """An instance for one invocation, its load counted: an idle one, else a new one while
        fewer than `workers` run, else (not `solo`) the least loaded. `solo`: the instance is
        this invocation's alone until released (a retry after a shared crash). Release with
        `_release`."""
        with self._lock:
            while True:
                for c in [c for c in self.containers if not c.alive()]:
                    self._remove(c)
                idle = [c for c in self.containers if self._load.get(c.pid, 0) == 0]
                if idle:
                    return self._take(idle[0], inference_id, solo)
                if len(self.containers) + self._starting < self.workers:
                    self._starting += 1
                    break
                if self.containers and not solo:
                    least = min(self.containers, key=lambda c: self._load.get(c.pid, 0))
                    if self._load.get(least.pid, 0) < self.max_concurrency:
                        return self._take(least, inference_id, solo)
                self._started.wait(0.5)  # an instance is starting or busy: wait for it
        try:
            model_dir = self.model_dir()
            if model_dir is None:
                raise ContainerDied("no batch model bundle to serve")
            t0 = time.perf_counter()
            c = ContainerProcess(model_dir, self.container_env, self.log_path, command=self.command)
        finally:
            with self._lock:
                self._starting -= 1
                self._started.notify_all()
        with self._lock:
            self.stats.starts += 1
            self.stats.start_seconds.append(time.perf_counter() - t0)
            log.info("container %d started on port %d in %.2f s (%d running)", c.pid, c.port,
                     c.ready_s, len(self.containers) + 1)
            self.containers.append(c)
            return self._take(c, inference_id, solo)

    def _take(self, c: ContainerProcess, inference_id: str, solo: bool) -> ContainerProcess:
        # caller holds the lock; a solo invocation fills the instance so no other joins it
        self._load[c.pid] = self._load.get(c.pid, 0) + (self.max_concurrency if solo else 1)
        serving = self._serving.setdefault(c.pid, set())
        if serving:  # every invocation on the instance now shares it
            self._shared.update(serving)
            self._shared.add(inference_id)
        serving.add(inference_id)
        return c

    def _release(self, c: ContainerProcess, inference_id: str = "", solo: bool = False) -> None:
        with self._lock:
            if c.pid in self._load:
                self._load[c.pid] = max(0, self._load[c.pid] - (self.max_concurrency if solo else 1))
            self._serving.get(c.pid, set()).discard(inference_id)
            self._started.notify_all()

    def _remove(self, c: ContainerProcess) -> None:  # caller holds the lock
        if c in self.containers:
            log.info("container %d stopping", c.pid)
            self.containers.remove(c)
            self._load.pop(c.pid, None)
            self._serving.pop(c.pid, None)
            c.stop()
            self.stats.stops += 1

    def _stop_container(self) -> None:  # caller holds the lock: stop every instance
        for c in list(self.containers):
            self._remove(c)

    def _container_failed(self, c: ContainerProcess) -> None:
        with self._lock:
            self._remove(c)

    def _idle_loop(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                idle = time.monotonic() - self._last_activity
                if self.containers and self._in_flight == 0 and idle >= self.idle_seconds:
                    log.info("idle for %.1f s: scaling to zero", idle)
                    self._stop_container()

    # --- invocations

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            free = self.max_concurrency * self.workers - self._in_flight
            if free <= 0:
                time.sleep(0.05)
                continue
            try:
                msgs = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, free),
                    WaitTimeSeconds=self.poll_wait_s).get("Messages", [])
            except Exception:
                log.exception("could not read the invocation queue")
                self._stop.wait(1.0)
                continue
            for m in msgs:
                with self._lock:
                    self._in_flight += 1
                    self._last_activity = time.monotonic()
                self._pool.submit(self._handle, m)

    def _handle(self, message: dict[str, Any]) -> None:
        received = iso_now()
        try:
            req = json.loads(message["Body"])
            self.stats.invocations += 1
            ok, body, reason = self._invoke(req)
            self._finish(req, ok, body, reason, received)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception:  # leave the message: it comes back after the visibility timeout
            log.exception("invocation %s not completed; it will be redelivered",
                          message.get("MessageId"))
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_activity = time.monotonic()

    def _invoke(self, req: dict[str, Any]) -> tuple[bool, bytes, str | None]:
        """(ok, body to write, failure reason)."""
        bucket, key = parse_s3_uri(req["InputLocation"])
        try:
            payload = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            reason = f"input object {req['InputLocation']} not found"
            return False, json.dumps({"error": reason}).encode(), reason
        last = ""
        inference_id = str(req.get("InferenceId", ""))
        charged = 0
        solo = False  # after a crash: retried alone, so the next crash is this part's own
        while charged < self.max_attempts:
            c: ContainerProcess | None = None
            try:
                c = self._acquire(inference_id, solo)
                try:
                    status, body = c.request("POST", "/invocations", payload,
                                             timeout=self.timeout_s)
                finally:
                    self._release(c, inference_id, solo)
            except TimeoutError:
                reason = f"invocation timed out after {self.timeout_s:.0f} s"
                with self._lock:
                    self._shared.discard(inference_id)
                if c is not None:
                    self._container_failed(c)
                return False, json.dumps({"error": reason}).encode(), reason
            except (ContainerDied, *CONNECTION_ERRORS) as exc:
                code = _exit_code(c.proc) if c is not None else None
                last = (f"container exited (code {code}) during the invocation" if code is not None
                        else f"container unreachable or failed to start ({type(exc).__name__})")
                with self._lock:
                    shared = inference_id in self._shared
                    self._shared.discard(inference_id)
                charged += 0 if shared else 1
                log.warning("attempt of %s failed (%d/%d charged%s): %s", inference_id, charged,
                            self.max_attempts, "; the instance was shared, not charged" if shared
                            else "", last)
                if c is not None:
                    self._container_failed(c)
                if charged < self.max_attempts:
                    self.stats.retries += 1
                solo = True
                continue
            with self._lock:
                self._shared.discard(inference_id)
            if status == 200:
                return True, body, None
            kind = "client" if 400 <= status < 500 else "server"
            reason = f"ClientError: Received {kind} error ({status}) from model"
            return False, body, reason
        reason = f"{last}; gave up after {self.max_attempts} attempt(s)"
        return False, json.dumps({"error": reason}).encode(), reason

    def _finish(self, req: dict[str, Any], ok: bool, body: bytes, reason: str | None,
                received: str) -> None:
        where = req["OutputLocation"] if ok else req["FailureLocation"]
        bucket, key = parse_s3_uri(where)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        if ok:
            self.stats.succeeded += 1
        else:
            self.stats.failed += 1
        msg = sagemaker_notification(req, ok, received, reason, self.settings.aws_region)
        self.sns.publish(TopicArn=self.success_arn if ok else self.error_arn,
                         Message=json.dumps(msg))


class NotificationRelay:
    """The batch lane's success and error SNS topics (moto), an SQS queue subscribed to both,
    and a thread that hands each message, as a Lambda SNS event, to `notify` (the notifications
    Lambda's handler, as AWS would call it). Every local batch host publishes to these topics."""

    def __init__(self, settings: Settings, *, sqs: Any, sns: Any,
                 notify: Callable[[dict[str, Any]], Any] | None, poll_wait_s: int = 1):
        self.settings = settings
        self.sqs = sqs
        self.sns = sns
        self.notify = notify
        self.poll_wait_s = poll_wait_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def setup(self) -> None:
        """Create the topics, the queue and the subscriptions (idempotent, like `cdk deploy`)."""
        self.success_arn: str = self.sns.create_topic(
            Name=self.settings.batch_success_topic)["TopicArn"]
        self.error_arn: str = self.sns.create_topic(Name=self.settings.batch_error_topic)["TopicArn"]
        self.note_url = self.sqs.create_queue(
            QueueName=self.settings.batch_notification_queue)["QueueUrl"]
        note_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.note_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.subscriptions: dict[str, str] = {}
        for topic in (self.success_arn, self.error_arn):
            existing = [s for s in self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
                        if s["Endpoint"] == note_arn]
            arn = existing[0]["SubscriptionArn"] if existing else self.sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=note_arn)["SubscriptionArn"]
            self.subscriptions[topic] = arn

    def start(self) -> NotificationRelay:
        self._thread = threading.Thread(target=self._loop, name="runner-notifications",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_wait_s + 5)

    def alive(self) -> bool:
        """True while the relay's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self.sqs.receive_message(QueueUrl=self.note_url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=self.poll_wait_s).get("Messages", [])
            except Exception:
                log.exception("could not read the notification queue")
                self._stop.wait(1.0)
                continue
            for m in msgs:
                try:
                    envelope = json.loads(m["Body"])
                    event = sns_lambda_event(envelope,
                                             self.subscriptions.get(envelope.get("TopicArn"), ""))
                    if self.notify is not None:
                        self.notify(event)
                    self.sqs.delete_message(QueueUrl=self.note_url,
                                            ReceiptHandle=m["ReceiptHandle"])
                except Exception:
                    log.exception("notification not handled; it will be redelivered")
