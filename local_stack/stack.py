"""The local stack, offline: the instant-lane API (uvicorn), S3 (moto server on 127.0.0.1), the
drop folder (a watcher feeding the Lambda's own processing code real-shaped S3 events) and,
when asked, the batch lane. Also `serve` (the API alone) and `predict_file` (label one file).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from local_stack.s3local import PROFILE
from local_stack.server import api_server
from twolane.bundle import BundleError, resolve_bundle
from twolane.settings import Settings, get_settings

console = Console(highlight=False, soft_wrap=True)
log = logging.getLogger("twolane.local")

EXAMPLE_CSV = (
    "comment_id,comment_text,question_type\n"
    "1,The nurses were kind and explained everything clearly,what_good\n"
    "2,\"Waited four hours in A&E, and parking was impossible\",could_improve\n"
    "3,n/a,nonspecific\n"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on the port now. SO_REUSEADDR as uvicorn sets it: a port
    left in TIME_WAIT by the previous run (a restart within a minute) counts as free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def instant_bundle_path(bundle: Path | None = None, settings: Settings | None = None) -> Path:
    s = settings or get_settings()
    return resolve_bundle(bundle or s.instant_bundle or s.bundles, "instant")


def load_predictor(bundle: Path | None = None) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle_path(bundle))


def ensure_instant_bundle(settings: Settings, build: Callable[[Path], object] | None = None) -> Path:
    """The instant bundle; when there is none and `build` is given (the CLI's: the emulator never
    imports the build), `build(bundles root)` makes it from the packaged NHS data (minutes, once).

    Raises BundleError when there is none and nothing to build it with, or a bundle was named."""
    try:
        return instant_bundle_path(settings=settings)
    except BundleError:
        if settings.instant_bundle is not None or build is None:
            raise  # a bundle was named explicitly: do not build somewhere else
    console.print(
        "[bold]No instant-lane model yet.[/] Building it from the NHS data in data/: this takes a "
        "few minutes, once; later starts reuse it from " + str(settings.bundles) + "."
    )
    build(settings.bundles)
    return instant_bundle_path(settings=settings)


def ensure_sentence_encoder(settings: Settings, export: Callable[[Path], Path] | None = None) -> Path | None:
    """The sentence encoder summaries' points cluster with; when there is none and `export` is
    given (the CLI's: the emulator never imports the build), `export(bundles/encoder)` makes it
    from the packaged MiniLM (under a minute, once). None when it cannot be built here (no
    torch): points then come from the comments' words."""
    from twolane.wiring import sentence_encoder

    found = sentence_encoder(settings)
    if found is not None or settings.sentence_encoder is not None:
        return found
    if export is None:
        return None
    console.print("Exporting the sentence encoder for summaries (once, under a minute).")
    try:
        return export(settings.bundles / "encoder")
    except ImportError:
        return None


def _local_aws(endpoint: str, access_key_id: str, secret_access_key: str) -> Settings:
    """Point every AWS client in this process (and the processes it starts) at the local S3,
    with its credentials (no session token: the local S3 refuses one)."""
    os.environ["TWOLANE_AWS_ENDPOINT_URL"] = endpoint
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ["AWS_ACCESS_KEY_ID"] = access_key_id
    os.environ["AWS_SECRET_ACCESS_KEY"] = secret_access_key
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", get_settings().aws_region)
    get_settings.cache_clear()
    return get_settings()


def _start_batch(settings: Settings, build_args: tuple[str, ...] = ()) -> Any | None:
    """The batch lane, if it can start; the instant lane runs either way. build_args: extra
    `twolane build batch` arguments for its background build (a data file and its spec)."""
    try:
        from local_stack.batch_lane import start_batch_lane

        return start_batch_lane(settings, build_args=build_args)
    except Exception as exc:
        log.warning("batch lane not started: %s", exc)
        console.print(f"[yellow]Batch lane not started ({type(exc).__name__}: {exc}). "
                      "The instant lane runs without it.[/]")
        return None


def _curl(port: int, settings: Settings) -> str:
    key = " -H \"x-api-key: $YOUR_KEY\"" if settings.api_key_set else ""  # never print a key
    return (
        f"curl -s http://127.0.0.1:{port}/v1/predict -H 'content-type: application/json'{key} \\\n"
        "    -d '{\"items\": [{\"comment_id\": \"1\", \"comment_text\": "
        "\"The nurses were kind but parking was awful\", \"question_type\": \"nonspecific\"}]}'"
    )


def _print_outcome(o: dict[str, Any]) -> None:
    if o["status"] == "done":
        console.print(f"[green]drop folder:[/] {o['key']} -> {o['result_key']} ({o['detail']})")
    elif o["status"] == "submitted":
        wait = " (starts when the batch model is built)" if o.get("deferred") else ""
        console.print(f"[green]drop folder:[/] {o['key']} -> batch lane, results to "
                      f"{o['result_key']}{wait}")
    elif o["status"] == "failed":
        console.print(f"[red]drop folder:[/] {o['key']} -> {o['result_key']}: {o['detail']}")


def _dropbox_ready(dropbox: Path | None) -> Path | None:
    """The local drop folder, made (with an example CSV) when missing; None: no drop folder."""
    if dropbox is None:
        return None
    dropbox = dropbox.resolve()
    dropbox.mkdir(parents=True, exist_ok=True)
    if not (dropbox / "example.csv").exists():
        (dropbox / "example.csv").write_text(EXAMPLE_CSV, encoding="utf-8")
    return dropbox


def up(port: int = 8000, batch: bool = True, host: str = "127.0.0.1",  # noqa: PLR0913, PLR0915 (the stack, started top to bottom)
       moto_port: int | None = None, dropbox: Path | None = Path("dropbox"),
       build_instant: Callable[[Path], object] | None = None,
       build_encoder: Callable[[Path], Path] | None = None,
       batch_build_args: Sequence[str] = ()) -> None:
    """Run the local stack until Ctrl-C: API, local S3 + drop folder, and (if `batch`) the batch
    lane; `build_instant` (see `ensure_instant_bundle`) when there is no instant bundle yet,
    `build_encoder` (see `ensure_sentence_encoder`) when there is no sentence encoder yet;
    `batch_build_args`: extra arguments of the background batch build (twolane_cli.own_data: a
    team's file and its data spec)."""
    from local_stack import recovery, supervise
    from local_stack.invoker import local_job_service
    from local_stack.s3local import LocalS3
    from local_stack.watcher import DropFolderWatcher
    from twolane.api.app import create_app
    from twolane.aws import client

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    settings = get_settings()
    if not port_is_free(port, host):
        raise SystemExit(f"port {port} on {host} is in use: pass another with --port")

    bundle = ensure_instant_bundle(settings, build_instant)
    ensure_sentence_encoder(settings, build_encoder)
    predictor = load_predictor(bundle)

    mport = settings.moto_port if moto_port is None else moto_port
    if not mport or not port_is_free(mport):
        mport = 0  # any free port
    with ExitStack() as running:  # whatever started is stopped, in reverse order, however we leave
        running.callback(lambda: console.print("Stopped."))
        local_s3 = LocalS3(settings.state_dir, mport).start()  # persistent, credentials checked
        running.callback(local_s3.stop)
        mport = local_s3.port
        creds = local_s3.credentials
        settings = _local_aws(local_s3.endpoint, creds.access_key_id, creds.secret_access_key)
        s3 = client("s3")
        region = settings.aws_region
        if settings.bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=settings.bucket,
                             **({} if region == "us-east-1" else
                                {"CreateBucketConfiguration": {"LocationConstraint": region}}))
        dropbox = _dropbox_ready(dropbox)
        jobs = local_job_service(settings)
        watcher = DropFolderWatcher(s3, settings.bucket, predictor, settings, dropbox,
                                    _print_outcome, jobs=jobs if batch else None)
        # What a stop left: every job ends; those resumed start again once the batch lane can
        # take them (their queue was not kept; without the batch lane the watcher starts none).
        watcher.defer(recovery.recover(s3, settings.bucket, jobs, dropbox=dropbox,
                                       record_days=settings.job_record_days).resumed)
        watcher.start()
        running.callback(watcher.stop)

        batch_handle = _start_batch(settings, tuple(batch_build_args)) if batch else None
        if batch_handle is not None:
            running.callback(_stop_batch, batch_handle)
        close = getattr(jobs.invoker, "close", None)  # the Lambda stand-in's worker threads
        if close is not None:
            running.callback(close)  # before the batch lane stops (callbacks run in reverse)

        app = create_app(predictor, settings, jobs)
        app.state.health_checks = supervise.health_checks(local_s3, batch_handle)
        server = api_server(app, host, port, settings.request_read_seconds)
        api = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        api.start()
        running.callback(api.join, 10)
        running.callback(setattr, server, "should_exit", True)
        running.callback(lambda: console.print("Stopping..."))
        while not server.started and api.is_alive():
            time.sleep(0.05)
        if not server.started:
            raise SystemExit(f"the API did not start on {host}:{port}")

        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):  # kill, or the terminal closed
                signal.signal(sig, lambda *_: stop.set())
        _banner(host, port, mport, settings, predictor.version, dropbox, batch, batch_handle,
                local_s3.credentials_file)
        try:
            supervise.keep_running(stop, api, local_s3, lambda: recovery.expire_records(
                s3, settings.bucket, jobs.store, settings.job_record_days))
        except KeyboardInterrupt:
            pass


def _stop_batch(handle: Any) -> None:
    try:
        handle.stop()
    except Exception as exc:
        console.print(f"[yellow]batch lane did not stop cleanly: {exc}[/]")


def _banner(host: str, port: int, mport: int, settings: Settings, version: str,  # noqa: PLR0913 (what the banner shows)
            dropbox: Path | None, batch: bool, batch_handle: Any, credentials: Path) -> None:
    b = settings.bucket
    here = Path.cwd()
    shown = (dropbox.relative_to(here) if dropbox and dropbox.is_relative_to(here) else dropbox)
    lines = [
        "",
        f"[bold green]twolane is running[/] (instant model {version})",
        "",
        f"  [bold]Web page     http://{host}:{port}/[/]   (open it in a browser to label a file)",
        f"  API          http://{host}:{port}   (docs: http://{host}:{port}/docs)",
        f"  Local S3     http://127.0.0.1:{mport}   bucket {b} (moto; kept on disk in "
        f"{settings.state_dir.name}/local-s3/, so jobs and results survive a restart; "
        f"credentials: profile {PROFILE} in {_shown(credentials)})",
    ]
    if shown is not None:
        lines.append(f"  Drop folder  put files in {shown}/inbox/  ->  results in {shown}/outbox/ "
                     f"(bad files: {shown}/failed/); {shown}/inbox/batch/ for the batch lane")
    else:
        lines.append(f"  Drop folder  s3://{b}/inbox/  ->  s3://{b}/outbox/")
    if not batch:
        state = "off (--no-batch)"
    elif batch_handle is None:
        state = "not running (see the warning above); the instant lane works without it"
    else:
        state = str(getattr(batch_handle, "message", "starting in the background"))
        state = state.removeprefix("batch lane: ").removeprefix("batch lane ")
    lines += [
        f"  Batch lane   {state}",
        "",
        "[bold]Label a comment:[/]",
        "  " + _curl(port, settings),
        "",
        "[bold]Label a file[/] (CSV with comment_id, comment_text[, question_type]; or JSON / JSONL):",
    ]
    if shown is not None:
        lines.append(f"  cp {shown}/example.csv {shown}/inbox/    # results appear in "
                     f"{shown}/outbox/example.csv")
    lines += [
        f"  AWS_SHARED_CREDENTIALS_FILE={_shown(credentials)} aws --profile {PROFILE} "
        f"--endpoint-url http://127.0.0.1:{mport} s3 cp {shown or '.'}/example.csv s3://{b}/inbox/",
        "",
        "Press Ctrl-C to stop.",
    ]
    for line in lines:
        console.print(line, soft_wrap=True)


def _shown(path: Path) -> Path:
    """`path` relative to the current folder when it is inside it (shorter to read and copy)."""
    here = Path.cwd()
    return path.relative_to(here) if path.is_relative_to(here) else path


def serve(bundle: Path | None = None, port: int = 8000, host: str = "127.0.0.1") -> None:
    """The API alone, on a given bundle (default: the newest under the settings' bundles root)."""
    from twolane.api.app import create_app

    predictor = load_predictor(bundle)
    console.print(f"Web page  http://{host}:{port}/   (instant model {predictor.version}; "
                  f"API docs: http://{host}:{port}/docs)")
    api_server(create_app(predictor), host, port, get_settings().request_read_seconds,
               log_level="info").run()


def predict_file(file: Path, out: Path | None = None, bundle: Path | None = None) -> Path:
    """Label a CSV / JSON / JSONL file in one go (the drop folder's formats); returns the result path."""
    from twolane.dropfolder.formats import FormatError, family_of, read_items, write_results
    from twolane.intake import label

    file = Path(file)
    try:
        family = family_of(file.name)
        items = read_items(file.read_bytes(), family, get_settings().max_text_chars)
    except (FormatError, OSError) as exc:
        console.print(f"[red]Cannot label {file}: {exc}[/]")
        raise SystemExit(1) from None
    predictor = load_predictor(bundle)
    preds = label(predictor, items)
    out = Path(out) if out else file.with_name(f"{file.stem}.labels{file.suffix}")
    out.write_bytes(write_results(preds, family))
    console.print(f"Labelled {len(preds)} comments with instant model {predictor.version}: {out}")
    return out
