"""Closed-loop load generator: locust (as a library) against ONE local server.

Run as its own process (`python -m recommender.loadgen PLAN.json RESULT.json`) because
importing locust monkey-patches the standard library with gevent; the orchestrator
(`recommender.loadtest`) stays unpatched. The plan lists cells (concurrency, request bodies,
request count, time limit); each cell runs `concurrency` locust users that POST back to back
(no think time) until `requests` responses are in or `max_seconds` have passed, whichever comes
first. Latency of every request, errors, the server's CPU seconds and peak RSS, and how busy
the whole machine was are written back as JSON. Targets must be 127.0.0.1 / localhost.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import gevent
import psutil
from locust import FastHttpUser, constant, task
from locust.env import Environment

ALLOWED_HOSTS = {"127.0.0.1", "localhost"}


def _tree(pid: int) -> list[psutil.Process]:
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def _server_cpu_s(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _server_rss_threads(pid: int) -> tuple[float, int]:
    rss, threads = 0, 0
    for p in _tree(pid):
        try:
            rss += p.memory_info().rss
            threads += p.num_threads()
        except psutil.Error:
            pass
    return rss / 2**20, threads


def run_cell(base_url: str, path: str, bodies: list[bytes], headers: dict[str, str],  # noqa: PLR0913 (one load-test cell's parameters)
             users: int, n_requests: int, max_seconds: float, server_pid: int | None,
             expect_items: int | None = None) -> dict[str, Any]:
    """One closed-loop run. Bounded by request count AND wall time."""
    state: dict[str, Any] = {"sent": 0, "t_last": None, "checked": None}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + max_seconds

    class Client(FastHttpUser):
        host = base_url
        wait_time = constant(0)
        network_timeout = max(max_seconds, 5.0)
        connection_timeout = 5.0

        @task
        def post(self) -> None:
            if state["sent"] >= n_requests or time.perf_counter() >= deadline:
                gevent.sleep(0.01)  # done: idle until the runner stops
                return
            i = state["sent"]
            state["sent"] += 1
            with self.client.post(path, data=bodies[i % len(bodies)], headers=headers,
                                  name="cell", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                elif state["checked"] is None and expect_items is not None:
                    # Check the first answer of each cell really holds one result per comment.
                    n = _count_results(r.text)
                    state["checked"] = n
                    if n != expect_items:
                        r.failure(f"expected {expect_items} results, got {n}")

    def on_request(response_time: float, exception: Exception | None, **_: Any) -> None:
        if exception is None:
            latencies.append(float(response_time))
        else:
            errors.append(str(exception)[:300])
        state["t_last"] = time.perf_counter()

    env = Environment(user_classes=[Client])
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()

    cpu0 = _server_cpu_s(server_pid) if server_pid else 0.0
    sys0 = psutil.cpu_times()
    me = psutil.Process()
    me0 = me.cpu_times()
    rss_peak, threads = _server_rss_threads(server_pid) if server_pid else (0.0, 0)
    t0 = time.perf_counter()
    runner.start(users, spawn_rate=100.0, wait=False)  # all users within ~0.05 s
    while (len(latencies) + len(errors) < n_requests
           and time.perf_counter() < deadline + 1.0):
        gevent.sleep(0.05)
        if server_pid:
            rss, threads = _server_rss_threads(server_pid)
            rss_peak = max(rss_peak, rss)
    t_end = state["t_last"] or time.perf_counter()
    runner.quit()
    cpu1 = _server_cpu_s(server_pid) if server_pid else 0.0
    sys1 = psutil.cpu_times()
    me1 = me.cpu_times()

    elapsed = max(t_end - t0, 1e-9)
    busy = lambda t: t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)  # noqa: E731
    machine_busy_s = busy(sys1) - busy(sys0)
    wall_total = time.perf_counter() - t0
    own = (me1.user + me1.system) - (me0.user + me0.system)
    server_cpu = cpu1 - cpu0
    return {
        "users": users,
        "requests_ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "latencies_ms": latencies,
        "elapsed_s": elapsed,
        "timed_out": len(latencies) + len(errors) < n_requests,
        "server_cpu_s": server_cpu,
        "server_rss_peak_mb": rss_peak,
        "server_threads": threads,
        "loadgen_cpu_s": own,
        # CPU seconds used on the machine by everything else (other people's work, the OS).
        "other_cpu_s": max(machine_busy_s - server_cpu - own, 0.0),
        "wall_s": wall_total,
        "checked_results": state["checked"],
    }


def _count_results(text: str | None) -> int | None:
    try:
        doc = json.loads(text or "")
    except ValueError:
        return None
    if isinstance(doc, dict):
        for key in ("results", "predictions"):
            if isinstance(doc.get(key), list):
                return len(doc[key])
    if isinstance(doc, list):
        return len(doc)
    return None


def main(plan_path: str, result_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    base = plan["base_url"]
    if urlparse(base).hostname not in ALLOWED_HOSTS:
        raise SystemExit(f"refusing to load-test {base}: only 127.0.0.1/localhost")
    bodies = {k: [b.encode() for b in v] for k, v in plan["bodies"].items()}
    out = []
    for cell in plan["cells"]:
        common = dict(base_url=base, path=plan["path"], bodies=bodies[str(cell["batch"])],
                      headers=plan["headers"], users=cell["concurrency"],
                      server_pid=plan.get("server_pid"))
        if cell.get("warmup"):
            run_cell(n_requests=cell["warmup"], max_seconds=cell["max_seconds"], **common)
        res = run_cell(n_requests=cell["requests"], max_seconds=cell["max_seconds"],
                       expect_items=cell["batch"], **common)
        out.append({**cell, **res})
        Path(result_path).write_text(json.dumps(out), encoding="utf-8")  # partial results survive
    Path(result_path).write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
