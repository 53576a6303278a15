"""The batch lane inside `twolane up`: its host, and (when there is no batch bundle yet) the
transformer build in a background process.

The host is the one TWOLANE_BATCH_INVOKER names (`twolane up --batch-host`): the local async
runner around the serving container (SageMaker, the default), or `LambdaHost` (the batch
worker's Lambda handler, run by `local_stack.invoker.LocalLambdaInvoker`). Both publish to the
same SNS topics, relayed to the real notifications handler.

The build is slow (tens of minutes on 2 cores), so it never blocks the instant lane: it runs
niced in its own process, writing to .twolane/logs/batch-build.log. Until a batch bundle exists,
POST /v1/jobs answers 503 "batch model is still building; see <log>". The runner looks for the
bundle each time it starts the container, so jobs work as soon as the build finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twolane.bundle import BundleError, resolve_bundle
from twolane.jobs.kinds import KINDS
from twolane.jobs.record import JobKind
from twolane.settings import REPO_ROOT, Settings

BUILD_LOG = "batch-build.log"
BUILD_PID = "batch-build.pid"


def build_log(settings: Settings) -> Path:
    return Path(settings.state_dir) / "logs" / BUILD_LOG


def _pid_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / BUILD_PID


def find_batch_bundle(settings: Settings) -> Path | None:
    try:
        return resolve_bundle(settings.batch_bundle or settings.bundles, "batch")
    except BundleError:
        return None


def build_running(settings: Settings) -> bool:
    """True while the background build this stack started is alive."""
    pid_file = _pid_file(settings)
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def unavailable_reason(settings: Settings, kind: JobKind) -> str | None:
    """Why the local batch lane cannot take a job of this kind now (the API answers 503)."""
    if KINDS[kind].uses_llm:
        from local_stack.llm_lane import unavailable_reason as llm_unavailable

        return llm_unavailable(settings)
    if find_batch_bundle(settings) is not None:
        return None
    log = build_log(settings)
    if build_running(settings):
        return f"batch model is still building; see {log.name} in the state folder"
    if log.is_file():
        return f"no batch model: its build stopped before finishing; see {log.name} in the state folder"
    return "no batch model yet: run `twolane build batch` (or `twolane up`, which starts the build)"


def start_build(settings: Settings, args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`twolane build batch [args]` in a niced background process, output to the build log
    (args: e.g. `--data FILE` and its data-spec flags, twolane_cli.own_data)."""
    log = build_log(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 (handed to the child)
    cmd = ["nice", "-n", "10", sys.executable, "-m", "twolane_cli", "build", "batch",
           "--out", str(settings.bundles), *args]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                            start_new_session=True)
    out.close()
    _pid_file(settings).write_text(str(proc.pid))
    return proc


@dataclass
class BatchLane:
    """What `start_batch_lane` started; `stop()` ends the runner, its container and the build."""

    runner: object | None
    build: subprocess.Popen[bytes] | None
    message: str
    llm: object | None = None  # the LLM endpoint's runner (local_stack.llm_lane)

    def stop(self) -> None:
        if self.llm is not None:
            self.llm.stop()  # type: ignore[attr-defined]
        if self.runner is not None:
            self.runner.stop()  # type: ignore[attr-defined]
        if self.build is not None and self.build.poll() is None:
            os.killpg(self.build.pid, signal.SIGTERM)  # its own session: the build and children
            try:
                self.build.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.build.pid, signal.SIGKILL)


def start_batch_lane(settings: Settings, build_if_missing: bool = True,
                     build_args: Sequence[str] = ()) -> BatchLane:
    """Start the local batch lane (AWS clients must already point at moto). Returns at once.
    build_args: extra arguments of the background build (`start_build`)."""
    from local_stack.runner import AsyncRunner

    build = None
    bundle = find_batch_bundle(settings)
    if bundle is not None:
        message = f"batch lane ready: model {bundle.name} (container starts on the first job)"
    elif settings.batch_bundle is not None:
        message = (f"batch lane: no batch bundle at {settings.batch_bundle}; /v1/jobs answers 503, "
                   "slow-API jobs and inbox/batch/ files wait for one")
    elif build_running(settings):
        message = f"batch model is still building; see {build_log(settings)}"
    elif build_if_missing:
        build = start_build(settings, build_args)
        message = (f"batch model is building in the background (slow: tens of minutes on a CPU); "
                   f"progress in {build_log(settings)}. Until it is done /v1/jobs answers 503; "
                   "slow-API jobs and inbox/batch/ files wait for it.")
    else:
        message = "batch lane: no batch model; jobs answer 503"

    runner: object
    if settings.batch_invoker == "lambda":
        runner = LambdaHost(settings).start()
        message = message.replace("container starts", "Lambda batch worker loads it")
    else:
        env: dict[str, str] = {}  # the bundle holds its instant/ copy for the ensemble
        if settings.intra_op_threads:
            env["TWOLANE_INTRA_OP_THREADS"] = str(settings.intra_op_threads)
        runner = AsyncRunner(settings, lambda: find_batch_bundle(settings), container_env=env,
                             notify=notifications_lambda).start()
    from local_stack.llm_lane import start_llm_runner
    from local_stack.llm_lane import unavailable_reason as llm_unavailable

    llm_reason = llm_unavailable(settings)
    llm = None if llm_reason or settings.batch_invoker == "lambda" else start_llm_runner(settings)
    return BatchLane(runner=runner, build=build, message=message, llm=llm)


class LambdaHost:
    """The batch lane on Lambda, locally: the SNS topics and their relay to the notifications
    handler, and the batch worker function's environment (what `cdk deploy` configures on AWS):
    TWOLANE_BUCKET, TWOLANE_BATCH_SUCCESS_TOPIC_ARN, TWOLANE_BATCH_ERROR_TOPIC_ARN and
    TWOLANE_BATCH_BUNDLE. The worker runs in this process (`LocalLambdaInvoker`), so its
    environment is this process's, set by `start` and put back by `stop`."""

    def __init__(self, settings: Settings):
        from local_stack.runner import NotificationRelay
        from twolane.aws import client

        self.settings = settings
        self.relay = NotificationRelay(settings, sqs=client("sqs"), sns=client("sns"),
                                       notify=notifications_lambda)
        self._saved: dict[str, str | None] = {}

    def function_env(self) -> dict[str, str]:
        s = self.settings
        return {"TWOLANE_BUCKET": s.bucket,
                "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": self.relay.success_arn,
                "TWOLANE_BATCH_ERROR_TOPIC_ARN": self.relay.error_arn,
                "TWOLANE_BATCH_BUNDLE": str(s.batch_bundle or s.bundles)}

    def start(self) -> LambdaHost:
        from twolane.settings import get_settings

        self.relay.setup()
        env = self.function_env()
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        get_settings.cache_clear()
        self.relay.start()
        return self

    def alive(self) -> bool:
        """True while the notification relay runs (the worker threads are made per invocation)."""
        return self.relay.alive()

    def stop(self) -> None:
        from twolane.settings import get_settings

        self.relay.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def lambda_context(function_name: str) -> Any:  # stands in for powertools' LambdaContext
    """A Lambda context object as the runtime passes one (the fields powertools reads)."""
    name = function_name.rsplit(":", 1)[-1]
    return SimpleNamespace(function_name=name, memory_limit_in_mb=256,
                           invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{name}",
                           aws_request_id=str(uuid.uuid4()))


def notifications_lambda(event: dict[str, Any]) -> Any:
    """SNS notifications -> the real notifications Lambda handler, as AWS would call it."""
    from functions.notifications.handler import handler

    return handler(event, lambda_context("twolane-notifications-local"))
