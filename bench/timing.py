"""Timing for benchmarks on a shared machine: the best of a few runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[..., Any], repeats: int = 3) -> float:
    """The fastest of `repeats` runs of `fn()`, in seconds (others' load only ever adds time)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
