"""Local load tests of one lane's real serving process across a sweep.

For each CPU count (1 core, 2 cores ...) the server is started pinned to that many cores with
that many onnxruntime threads; one load-generator process (`recommender.loadgen`, locust) then
runs every (comments per request x concurrency) cell `repeats` times, the repeats interleaved
so that other work on the machine spreads over all cells. Each cell reports the median over
its repeats, and the spread (min..max) as the measurement noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from recommender.servers import REPO_ROOT, LaneServer, ServerExited, batch_server, instant_server


@dataclass
class Sweep:
    cores: list[int] = field(default_factory=lambda: [1, 2])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 20, 100])
    concurrency: list[int] = field(default_factory=lambda: [1, 4])
    requests: int = 60  # per cell and repeat (upper bound)
    max_seconds: float = 6.0  # per cell and repeat (upper bound)
    warmup: int = 3
    repeats: int = 3


@dataclass
class Cell:
    """One measured configuration, aggregated over its repeats (medians) plus the spread."""

    lane: str
    cores: int
    threads: int
    batch: int
    concurrency: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_cps: float  # comments per second (successful requests x batch / elapsed)
    requests_ok: int  # summed over repeats
    errors: int  # summed over repeats
    rss_peak_mb: float
    server_threads: int
    cpu_ms_per_comment: float  # server CPU time per comment (less sensitive to noise)
    other_cpu_share: float  # of the machine's CPU, fraction used by other work meanwhile
    p95_range_ms: tuple[float, float]
    throughput_range_cps: tuple[float, float]
    repeats: int
    timed_out_repeats: int
    error_samples: list[str] = field(default_factory=list)


@dataclass
class LaneResult:
    lane: str
    bundle: str
    bundle_label: str
    sweep: dict[str, Any]
    cells: list[Cell]
    startup_s: dict[int, float]  # cores -> seconds from spawn to healthy
    wall_s: float
    cpu_count: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_texts(n: int = 2000) -> list[tuple[str, str]]:
    """Real NHS comments (test split first, non-empty) as (id, text)."""
    from model_build.data import load_dataset

    ds = load_dataset()
    order = [i for i in range(len(ds.texts)) if ds.is_test[i]] + \
            [i for i in range(len(ds.texts)) if not ds.is_test[i]]
    out = [(ds.ids[i], ds.texts[i]) for i in order if ds.texts[i] and ds.texts[i].strip()]
    return out[:n]


def instant_body(items: list[tuple[str, str]]) -> str:
    return json.dumps({"items": [{"comment_id": str(i), "comment_text": t} for i, t in items]})


def batch_body(items: list[tuple[str, str]]) -> str:
    """The batch container's /invocations body: the same items shape as a batch job."""
    return json.dumps({"items": [{"comment_id": str(i), "comment_text": t} for i, t in items],
                       "target": "ms"})


BODY_BUILDERS: dict[str, Callable[[list[tuple[str, str]]], str]] = {
    "instant": instant_body, "batch": batch_body}
SERVER_FACTORIES: dict[str, Callable[..., LaneServer]] = {
    "instant": instant_server, "batch": batch_server}


def make_bodies(lane: str, texts: list[tuple[str, str]], batch: int, count: int = 12) -> list[str]:
    """`count` different request bodies of `batch` comments each, walking through the data."""
    build = BODY_BUILDERS[lane]
    bodies = []
    for k in range(count):
        start = (k * batch) % max(len(texts) - batch, 1)
        bodies.append(build(texts[start:start + batch]))
    return bodies


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def aggregate(lane: str, cores: int, threads: int, batch: int, concurrency: int,
              runs: list[dict[str, Any]]) -> Cell:
    per = []
    for r in runs:
        lat = np.asarray(r["latencies_ms"], dtype=float)
        thr = r["requests_ok"] * batch / r["elapsed_s"] if r["requests_ok"] else 0.0
        per.append({
            "p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99),
            "mean": float(lat.mean()) if lat.size else float("nan"), "thr": thr,
            "cpu_ms_pc": 1000 * r["server_cpu_s"] / max(r["requests_ok"] * batch, 1),
            "other": r["other_cpu_s"] / max(r["wall_s"] * (os.cpu_count() or 1), 1e-9),
        })
    med = lambda k: float(np.median([p[k] for p in per]))  # noqa: E731
    return Cell(
        lane=lane, cores=cores, threads=threads, batch=batch, concurrency=concurrency,
        p50_ms=med("p50"), p95_ms=med("p95"), p99_ms=med("p99"), mean_ms=med("mean"),
        throughput_cps=med("thr"),
        requests_ok=sum(r["requests_ok"] for r in runs), errors=sum(r["errors"] for r in runs),
        rss_peak_mb=max(r["server_rss_peak_mb"] for r in runs),
        server_threads=max(r["server_threads"] for r in runs),
        cpu_ms_per_comment=med("cpu_ms_pc"), other_cpu_share=med("other"),
        p95_range_ms=(min(p["p95"] for p in per), max(p["p95"] for p in per)),
        throughput_range_cps=(min(p["thr"] for p in per), max(p["thr"] for p in per)),
        repeats=len(runs), timed_out_repeats=sum(bool(r["timed_out"]) for r in runs),
        error_samples=[e for r in runs for e in r["error_samples"]][:3],
    )


def run_lane(lane: str, bundle: Path, sweep: Sweep, workdir: Path,
             texts: list[tuple[str, str]] | None = None, bundle_label: str = "",
             log: Callable[[str], None] = print) -> LaneResult:
    """Run the whole sweep for one lane; servers are started and stopped here."""
    t_start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    texts = texts or payload_texts()
    n_cpu = os.cpu_count() or 1
    all_cpus = sorted(os.sched_getaffinity(0))
    bodies = {str(b): make_bodies(lane, texts, b) for b in sweep.batch_sizes}
    cells: list[Cell] = []
    startup: dict[int, float] = {}
    notes: list[str] = []
    for cores in sweep.cores:
        if cores > len(all_cpus):
            notes.append(f"skipped {cores} cores: only {len(all_cpus)} available")
            continue
        server_cpus = set(all_cpus[:cores])
        # With spare cores the load generator gets its own; otherwise it shares (noted).
        spare = set(all_cpus) - server_cpus
        loadgen_cpus = spare or set(all_cpus)
        if not spare:
            notes.append(f"{cores}-core runs: load generator shared the server's cores")
        log_path = workdir / f"{lane}-{cores}core-server.log"
        for attempt in range(3):  # a free port can be taken by someone else before we bind it
            server = SERVER_FACTORIES[lane](bundle, server_cpus, cores, log_path=log_path)
            try:
                server.start()
                break
            except ServerExited as exc:
                if attempt == 2:
                    raise
                log(f"[{lane}] server did not start ({str(exc)[-200:]!r}); retrying")
        grid = list(product(sweep.batch_sizes, sweep.concurrency))
        plan_cells = [{"batch": b, "concurrency": c, "repeat": r, "requests": sweep.requests,
                       "max_seconds": sweep.max_seconds, "warmup": sweep.warmup}
                      for r in range(sweep.repeats) for b, c in grid]
        with server:
            startup[cores] = server.startup_s
            log(f"[{lane}] {cores} core(s): healthy after {server.startup_s:.1f} s; "
                f"{len(plan_cells)} runs")
            plan = {"base_url": server.base_url, "path": server.predict_path,
                    "headers": {"Content-Type": server.content_type},
                    "server_pid": server.proc.pid if server.proc else None,
                    "bodies": bodies, "cells": plan_cells}
            plan_path = workdir / f"{lane}-{cores}core-plan.json"
            result_path = workdir / f"{lane}-{cores}core-raw.json"
            plan_path.write_text(json.dumps(plan), encoding="utf-8")
            budget = sum(c["max_seconds"] * 2 + 5 for c in plan_cells) + 60
            subprocess.run([sys.executable, "-m", "recommender.loadgen", str(plan_path),
                            str(result_path)], cwd=REPO_ROOT, check=True, timeout=budget,
                           preexec_fn=lambda cpus=loadgen_cpus: os.sched_setaffinity(0, cpus))
            raw = json.loads(result_path.read_text(encoding="utf-8"))
        for b, c in grid:
            runs = [r for r in raw if r["batch"] == b and r["concurrency"] == c]
            cell = aggregate(lane, cores, cores, b, c, runs)
            cells.append(cell)
            log(f"[{lane}] cores={cores} batch={b:>3} conc={c}: p50 {cell.p50_ms:7.1f} ms  "
                f"p95 {cell.p95_ms:7.1f} ms  {cell.throughput_cps:8.1f} comments/s  "
                f"errors {cell.errors}  rss {cell.rss_peak_mb:.0f} MB")
    return LaneResult(lane=lane, bundle=str(bundle), bundle_label=bundle_label or str(bundle),
                      sweep=asdict(sweep), cells=cells, startup_s=startup,
                      wall_s=time.perf_counter() - t_start, cpu_count=n_cpu, notes=notes)
