"""Start and stop each lane's real serving process on a free 127.0.0.1 port, pinned to CPUs.

CPU affinity (set in the child before exec, so every thread inherits it) stands in for an
instance's vCPU count, and TWOLANE_INTRA_OP_THREADS tells onnxruntime how many threads to use.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerExited(RuntimeError):
    """The server process ended before it was healthy (e.g. its port was taken meanwhile)."""


@dataclass
class LaneServer:
    """How to run one lane's server: command, environment, health and predict paths."""

    lane: str
    argv: list[str]
    env: dict[str, str]
    port: int
    health_path: str
    predict_path: str
    content_type: str = "application/json"
    log_path: Path | None = None
    cpus: set[int] = field(default_factory=set)
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> LaneServer:
        env = {**os.environ, **self.env}
        cpus = set(self.cpus)
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=env, cwd=REPO_ROOT, stdout=log,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec)
        deadline = t0 + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerExited(f"{self.lane} server exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                if httpx.get(self.base_url + self.health_path, timeout=2.0).status_code == 200:
                    self.startup_s = time.perf_counter() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.lane} server not healthy after {timeout_s:.0f} s; "
                           f"see {self.log_path}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> LaneServer:
        running = self.proc is not None and self.proc.poll() is None
        return self if running else self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def instant_server(bundle: Path, cores: set[int], threads: int,
                   log_path: Path | None = None) -> LaneServer:
    """`twolane serve` (uvicorn + the FastAPI app) on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "twolane_cli", "serve", "--bundle", str(bundle),
            "--port", str(port), "--host", "127.0.0.1"]
    env = {"TWOLANE_INTRA_OP_THREADS": str(threads), "TWOLANE_INSTANT_BUNDLE": str(bundle),
           "TWOLANE_API_KEYS": "", "OMP_NUM_THREADS": str(threads)}
    return LaneServer("instant", argv, env, port, "/health", "/v1/predict",
                      log_path=log_path, cpus=cores)


def batch_server(bundle: Path, cores: set[int], threads: int,
                 log_path: Path | None = None) -> LaneServer:
    """The batch-lane container entry point (`python sagemaker/serve.py`), SageMaker contract."""
    port = free_port()
    argv = [sys.executable, str(REPO_ROOT / "sagemaker" / "serve.py")]
    # The container as shipped (its default SAGEMAKER_MODEL_SERVER_WORKERS), bound to loopback.
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SM_MODEL_DIR": str(bundle),
           "TWOLANE_SERVE_HOST": "127.0.0.1", "TWOLANE_ONNX_PROVIDERS": "CPUExecutionProvider",
           "TWOLANE_INTRA_OP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "TWOLANE_LOG_LEVEL": "WARNING"}
    return LaneServer("batch", argv, env, port, "/ping", "/invocations",
                      log_path=log_path, cpus=cores)
