"""Keeping `twolane up` honest about its parts: the checks `/health` runs (the local S3, the
batch and LLM lanes' runner threads), and the main loop that stops the stack loudly when the
local S3 has died (everything but the instant API needs it; its state is on disk, so a
restart picks up where it stopped) and expires old job records now and then."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

log = logging.getLogger("twolane.local")
console = Console(highlight=False, soft_wrap=True, stderr=True)

HOUSEKEEPING_SECONDS = 3600.0  # how often collected job records are looked at for expiry
Check = Callable[[], bool]


def health_checks(local_s3: Any, batch_handle: Any | None) -> dict[str, Check]:
    """name -> check (True: up) for `GET /health` (twolane.api.routers.health): `local_s3`
    (its server thread alive and answering on its port) and, when the batch lane runs,
    `batch_lane` / `llm_lane` (their runner's threads alive)."""
    checks: dict[str, Check] = {"local_s3": local_s3.alive}
    for name, attr in (("batch_lane", "runner"), ("llm_lane", "llm")):
        part = getattr(batch_handle, attr, None)
        alive = getattr(part, "alive", None)
        if callable(alive):
            checks[name] = alive
    return checks


class LocalS3Died(SystemExit):
    """The local S3 stopped answering: `twolane up` stops (exit code 1) and says so."""


def keep_running(stop: threading.Event, api: threading.Thread, local_s3: Any,
                 housekeeping: Callable[[], object], every_s: float = 0.5) -> None:
    """Wait until `stop` is set or the API thread ends; raises LocalS3Died (after a loud
    line) when the local S3 is down on two looks in a row; runs `housekeeping` (record expiry)
    every HOUSEKEEPING_SECONDS, an error there logged by type and tried again next time."""
    next_house = time.monotonic() + HOUSEKEEPING_SECONDS
    misses = 0
    while not stop.is_set() and api.is_alive():
        stop.wait(every_s)
        misses = 0 if local_s3.alive() else misses + 1
        if misses >= 2:
            console.print("[bold red]The local S3 stopped answering: twolane stops.[/] Jobs, "
                          "files and results are kept on disk; run `twolane up` again.")
            log.error("local S3 down: stopping")
            raise LocalS3Died(1)
        if time.monotonic() >= next_house:
            next_house = time.monotonic() + HOUSEKEEPING_SECONDS
            try:
                housekeeping()
            except Exception as exc:  # noqa: BLE001 (the stack goes on; next hour again)
                log.error("job record expiry failed (%s); tried again later", type(exc).__name__)
