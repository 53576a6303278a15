"""A big batch job split into shards, through the local stack with 1 and 2 runner workers.

    nice -n 10 .venv/bin/python bench/shard.py [--bundle PATH] [--items 50000] [--workers 1 2]

Real NHS comments (data/nhs-patient-feedback, repeated with fresh ids up to --items) in one
job POSTed to /v1/jobs; the API (uvicorn, the app `twolane up` serves) splits it into shards of
--shard-size, the local async runner labels them with up to N `sagemaker/serve.py` processes
(TWOLANE_BATCH_WORKERS), and GET is polled every 0.5 s until the one 200 with every result in
input order. Each container is one instance of --threads onnxruntime threads taking
--concurrency invocations at once, so N workers use about N cores. Machine load is sampled
during each run (1-minute load average and this process tree's CPU seconds).

Writes bench/results/shard.json and the shard section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import httpx
import psutil

from bench.batch_e2e import free_port, load_items
from bench.results_md import write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "shard.json"
REPORT = HERE / "RESULTS.md"
START, END = "<!-- shard:start -->", "<!-- shard:end -->"


class LoadSampler:
    """Samples the 1-minute load average and the CPU seconds of this process and its
    children (the containers) while a job runs."""

    def __init__(self) -> None:
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> float:
        me = psutil.Process()
        total = sum(me.cpu_times()[:2])
        for child in me.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self.loads.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.cpu0 = self._cpu()
        self.loads.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = self._cpu() - self.cpu0  # the containers' CPU is counted while they live
        self._stop.set()
        self._thread.join()
        self.loads.append(os.getloadavg()[0])


def run_job(api: str, items: list[dict[str, Any]], runner: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = httpx.post(f"{api}/v1/jobs", json={"items": items, "target": "ms"}, timeout=600)
    t_post = time.perf_counter() - t0
    if r.status_code != 202:
        raise SystemExit(f"POST /v1/jobs answered {r.status_code}: {r.text[:300]}")
    url = api + r.json()["results_url"]
    most_running = 0
    while True:
        most_running = max(most_running, len(runner.container_pids()))
        g = httpx.get(url, timeout=600)
        if g.status_code != 202:
            break
        time.sleep(0.5)
    total = time.perf_counter() - t0
    if g.status_code != 200 or "results" not in g.json():
        raise SystemExit(f"job ended with {g.status_code}: {g.text[:300]}")
    body = g.json()
    ids = [x["comment_id"] for x in body["results"]]
    assert ids == [i["comment_id"] for i in items], "results out of order or missing"
    again = httpx.get(url, timeout=60).status_code
    return {"post_s": round(t_post, 2), "total_s": round(total, 2), "results": len(ids),
            "comments_per_s": round(len(items) / total, 1), "second_get_status": again,
            "most_containers_running": most_running, "model_version": body["model_version"]}


def stack_env(endpoint: str, bundle: Path, a: argparse.Namespace) -> dict[str, str]:
    """The local stack's environment for the run: moto at `endpoint`, the bundle, the limits."""
    return {"TWOLANE_AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-2",
            "TWOLANE_BATCH_BUNDLE": str(bundle),
            "TWOLANE_MAX_JOB_ITEMS": str(max(a.items, 50_000)),
            "TWOLANE_BATCH_SHARD_SIZE": str(a.shard_size),
            "TWOLANE_BATCH_MAX_CONCURRENCY": str(a.concurrency),
            "TWOLANE_INTRA_OP_THREADS": str(a.threads)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=None, help="batch bundle (default: newest)")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per container")
    ap.add_argument("--concurrency", type=int, default=1, help="invocations per container")
    a = ap.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from twolane.bundle import read_manifest, resolve_bundle
    from twolane.settings import get_settings

    bundle = resolve_bundle(a.bundle or get_settings().bundles, "batch")
    manifest = read_manifest(bundle)
    print(f"bundle {bundle} ({manifest.version}, tiny: {manifest.build.get('tiny', False)})")

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    os.environ.update(stack_env(f"http://127.0.0.1:{moto.get_host_and_port()[1]}", bundle, a))
    items = load_items(a.items)
    runs: dict[str, Any] = {}
    try:
        import uvicorn

        from local_stack.batch_lane import start_batch_lane
        from local_stack.invoker import local_job_service
        from twolane.api.app import create_app
        from twolane.aws import client

        for n in a.workers:
            os.environ["TWOLANE_BATCH_WORKERS"] = str(n)
            get_settings.cache_clear()
            tag = f"w{n}-{int(time.time())}"
            settings = get_settings().model_copy(update={
                "batch_queue": f"inv-{tag}", "batch_notification_queue": f"note-{tag}",
                "batch_success_topic": f"ok-{tag}", "batch_error_topic": f"err-{tag}"})
            try:
                client("s3").create_bucket(Bucket=settings.bucket, CreateBucketConfiguration={
                    "LocationConstraint": settings.aws_region})
            except Exception:  # noqa: BLE001 (made by the first run)
                pass
            lane: Any = start_batch_lane(settings, build_if_missing=False)
            port = free_port()
            app = create_app(settings=settings, jobs=local_job_service(settings))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                   log_level="warning"))
            threading.Thread(target=server.run, daemon=True).start()
            while not server.started:
                time.sleep(0.05)
            try:
                with LoadSampler() as load:
                    job = run_job(f"http://127.0.0.1:{port}", items, lane.runner)
                job.update({
                    "workers": n, "container_starts": lane.runner.stats.starts,
                    "invocations": lane.runner.stats.invocations,
                    "start_seconds": [round(x, 2) for x in lane.runner.stats.start_seconds],
                    "cpu_seconds": round(load.cpu_s, 1),
                    "loadavg_1m_mean": round(sum(load.loads) / len(load.loads), 2),
                    "loadavg_1m_max": round(max(load.loads), 2)})
                print(f"{n} worker(s): {job}")
                runs[str(n)] = job
            finally:
                server.should_exit = True
                lane.stop()
    finally:
        moto.stop()

    res = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "shared": "with other workers' jobs; see the load averages"},
        "bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
        "model_version": manifest.version,
        "tiny": bool(manifest.build.get("tiny", False)),
        "ensemble": bool(manifest.ensemble),
        "items": a.items, "shard_size": a.shard_size, "threads_per_container": a.threads,
        "invocations_per_container": a.concurrency,
        "runs": runs,
    }
    if "1" in runs and "2" in runs:
        res["speedup_2_vs_1"] = round(runs["1"]["total_s"] / runs["2"]["total_s"], 2)
    write_report(res)
    print(json.dumps(res, indent=2))


def write_report(res: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    rows = [
        f"| {r['workers']} | {r['total_s']} | {r['comments_per_s']} | {r['post_s']} | "
        f"{r['invocations']} | {r['most_containers_running']} | {r['cpu_seconds']} | "
        f"{r['loadavg_1m_mean']} (max {r['loadavg_1m_max']}) |"
        for r in res["runs"].values()]
    model = ("tiny test model: 2 layers, hidden 64, built by `model_build.batch.build_tiny_bundle` "
             "on a small instant bundle (`model_build.instant.build_small_bundle`, 800 rows) as "
             "the tests do, since no full batch bundle was built here; the figures show the "
             "plumbing and the scale-out, not the full model's speed" if res["tiny"]
             else "full model")
    section = "\n".join([
        START,
        "## A big job in shards, 1 and 2 workers (bench/shard.py)",
        "",
        (f"{res['items']:,} real NHS comments (the data set repeated, fresh ids) in one job (target "
         f"ms), split into shards of {res['shard_size']:,}; POST /v1/jobs -> GET polled every 0.5 s "
         f"-> one 200 with every result in input order (checked), second GET "
         f"{next(iter(res['runs'].values()))['second_get_status']}. Local stack: uvicorn API, moto "
         f"S3/SQS/SNS, the local async runner with TWOLANE_BATCH_WORKERS containers "
         f"(`sagemaker/serve.py`, {res['threads_per_container']} onnxruntime thread(s) and "
         f"{res['invocations_per_container']} invocation(s) at a time each), containers started "
         f"from zero. Bundle `{res['bundle']}` ({res['model_version']}, {model}). Measured "
         f"{res['measured_at']} on {res['machine']['cpus']} CPUs shared with other jobs, run with "
         "nice; CPU s = this process tree (API, moto, runner, containers)."),
        "",
        "| workers | POST -> results s | comments/s | POST s | invocations | containers seen "
        "| CPU s | 1-min load mean |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        (f"Two workers vs one: {res.get('speedup_2_vs_1', 'n/a')}x. The first run's POST includes "
         "the API's first-request warm-up. On AWS the same shards are what the async endpoint's "
         "backlog-per-instance scaling spreads over instances."),
        END,
    ])
    write_section(START, END, section, REPORT)


if __name__ == "__main__":
    if sys.argv[1:] == ["--report-only"]:  # re-render the section from the saved figures
        write_report(json.loads(RESULTS.read_text()))
    else:
        main()
