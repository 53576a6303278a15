"""A burst of large requests: server memory and /health latency while it lasts (loopback only).

    .venv/bin/python -m bench.burst [--bundle PATH] [--requests 100] [--items 2000] [--slots 4 100000]

Starts the API in its own process (uvicorn on 127.0.0.1, as bench/http.py does) once per value of
`--slots` (TWOLANE_MAX_CONCURRENT_REQUESTS: POSTs served at once, the rest wait before their
body is read), sends `--requests` POST /v1/predict of `--items` comments each, all at once, while
another client probes GET /health every 50 ms and the server's RSS is sampled from /proc every
50 ms. Writes bench/results/burst.json and the burst section of bench/RESULTS.md.
Targets: peak RSS under CEILING_MIB and /health p99 under HEALTH_TARGET_MS with the default slots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.http import find_bundle, pct, start_api
from bench.results_md import write_section
from twolane.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "burst.json"
START, END = "<!-- burst:start -->", "<!-- burst:end -->"
CEILING_MIB = 1024
HEALTH_TARGET_MS = 100.0
SENTENCES = ["The nurses were kind and explained everything clearly.",
             "We waited four hours in A&E and the parking was impossible.",
             "Food was cold and the ward was noisy at night.",
             "The doctor listened to me and I felt safe.", "n/a"]


def body(items: int) -> bytes:
    rows = [{"comment_id": str(i), "comment_text": " ".join(SENTENCES[(i + k) % 5] for k in range(3)),
             "question_type": "nonspecific"} for i in range(items)]
    return json.dumps({"items": rows}).encode()


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(bundle: Path, slots: int, requests: int, items: int) -> dict:
    server, url = start_api({"TWOLANE_INSTANT_BUNDLE": str(bundle),
                             "TWOLANE_MAX_CONCURRENT_REQUESTS": str(slots),
                             "TWOLANE_MAX_ITEMS": str(max(items, 2000))},
                            ("--backlog", str(max(2048, requests * 2))))
    payload = body(items)
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            c.post("/v1/predict", content=payload,
                   headers={"content-type": "application/json"}).raise_for_status()  # warm
        idle = rss_mib(server.pid)
        stop = threading.Event()
        rss: list[float] = []
        health_ms: list[float] = []

        def sample() -> None:
            while not stop.is_set():
                rss.append(rss_mib(server.pid))
                stop.wait(0.05)

        def probe() -> None:
            with httpx.Client(base_url=url, timeout=30) as hc:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    hc.get("/health").raise_for_status()
                    health_ms.append((time.perf_counter() - t0) * 1000)
                    stop.wait(0.05)

        threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
        for t in threads:
            t.start()

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
            async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as ac:
                rs = await asyncio.gather(*(ac.post("/v1/predict", content=payload,
                                                    headers={"content-type": "application/json"})
                                            for _ in range(requests)))
            return [r.status_code for r in rs]

        t0 = time.perf_counter()
        codes = asyncio.run(burst())
        wall = time.perf_counter() - t0
        time.sleep(1.0)  # let the server settle before the "after" sample
        after = rss_mib(server.pid)
        peak = rss_mib(server.pid, "VmHWM")
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        server.terminate()
        server.wait(10)
    return {
        "slots": slots, "requests": requests, "items_per_request": items,
        "request_bytes": len(payload), "ok": codes.count(200),
        "other_statuses": sorted({c for c in codes if c != 200}), "wall_s": round(wall, 2),
        "comments_per_s": round(requests * items / wall),
        "rss_idle_mib": round(idle, 1), "rss_peak_mib": round(max([peak, *rss]), 1),
        "rss_after_mib": round(after, 1),
        "health_probes": len(health_ms), "health_p50_ms": round(pct(health_ms, 50), 2),
        "health_p99_ms": round(pct(health_ms, 99), 2), "health_max_ms": round(max(health_ms), 2),
    }


def write_report(res: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    rows = [f"| {r['slots']} | {r['ok']}/{r['requests']} | {r['wall_s']} | {r['rss_idle_mib']} | "
            f"{r['rss_peak_mib']} | {r['rss_after_mib']} | {r['health_p50_ms']} | {r['health_p99_ms']} | "
            f"{r['health_max_ms']} |" for r in res["runs"]]
    default = Settings().max_concurrent_requests
    first = next((r for r in res["runs"] if r["slots"] == default), res["runs"][0])
    verdict = (f"peak RSS {first['rss_peak_mib']} MiB vs ceiling {CEILING_MIB} MiB: "
               f"{'met' if first['rss_peak_mib'] <= CEILING_MIB else 'NOT met'}; /health p99 "
               f"{first['health_p99_ms']} ms vs {HEALTH_TARGET_MS:.0f} ms: "
               f"{'met' if first['health_p99_ms'] <= HEALTH_TARGET_MS else 'NOT met'}")
    section = "\n".join([
        START,
        "## A burst of large requests (bench/burst.py)",
        "",
        f"{first['requests']} POST /v1/predict of {first['items_per_request']} comments "
        f"({first['request_bytes'] / 1e6:.2f} MB each) sent at once to uvicorn on 127.0.0.1 (1 worker), "
        f"GET /health probed every 50 ms meanwhile, server RSS sampled every 50 ms; bundle: "
        f"{res['bundle']}; measured {res['measured_at']} on {res['machine']['cpus']} shared CPUs "
        f"(1-min load {res['machine']['loadavg_1m']}). `slots` = TWOLANE_MAX_CONCURRENT_REQUESTS "
        f"(default {default}: the rest wait, unread, in the socket buffers); 100000 stands for no bound.",
        "",
        "| slots | answered 200 | wall s | RSS idle MiB | RSS peak MiB | RSS after MiB | "
        "/health p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"With the default bound: {verdict}.",
        "Memory is what the bound buys (without it RSS grows with the number of bodies in flight and "
        "stays up). /health waits behind the event loop's share of each admitted request: reading "
        "and validating 2,000 comments takes about 17 ms of one idle core (JSON parse 4 ms, "
        "pydantic 13 ms), and a few of those queue ahead of a probe; fewer slots shorten that "
        "queue at some cost in throughput.",
        END,
    ])
    write_section(START, END, section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="instant bundle folder or bundles root (default: settings)")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--slots", type=int, nargs="+", default=[4, 100000])
    a = ap.parse_args()
    bundle, kind = find_bundle(a.bundle)
    runs = [one_run(bundle, s, a.requests, a.items) for s in a.slots]
    res = {"what": "burst of large POST /v1/predict; RSS and /health latency",
           "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "bundle": kind,
           "ceiling_mib": CEILING_MIB, "health_target_ms": HEALTH_TARGET_MS, "runs": runs,
           "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                       "python": platform.python_version()}}
    write_report(res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
