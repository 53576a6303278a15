"""The `twolane` command line, the top of the house (nothing imports it). Each command is a thin
wrapper over the module that owns it: the local stack, the build, the recommender, infra;
imports are lazy so `twolane --help` is instant and serving never imports build code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from twolane_cli.spec_flags import data_spec_flags

if TYPE_CHECKING:
    from model_build.dataspec import SpecArgs

app = typer.Typer(help="twolane: an instant lane and a batch lane for text classification.",
                  no_args_is_help=True)
build_app = typer.Typer(help="Train, export to ONNX, check and write a versioned bundle.",
                        no_args_is_help=True)
app.add_typer(build_app, name="build")

DataOpt = typer.Option(None, "--data", help="Labelled comments: CSV, TSV, .xlsx or JSONL "
                       "(docs/own_data.md). Default: the bundled NHS data.")
OutOpt = typer.Option(None, "--out", help="Bundles root. Default: ./bundles")


def _refuse(err: Exception, code: int) -> typer.Exit:
    """One line on stderr, no traceback; the exit to raise."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[red]refused:[/] {err}", markup=True, highlight=False)
    return typer.Exit(code)


@build_app.command("instant")
@data_spec_flags
def build_instant(
    data: Path | None = DataOpt,
    out: Path | None = OutOpt,
    rows: int | None = typer.Option(None, help="Train on the first N rows only (quick check)."),
    *,
    spec: SpecArgs,
) -> None:
    """TF-IDF + linear and TF-IDF + XGBoost for the data's labels, plus sentiment, as ONNX.

    Exit 2 with a one-line reason for data it cannot learn from."""
    from model_build.data import DataError
    from model_build.instant import BuildError, run

    try:
        run(data=data, out=out, rows=rows, spec=spec)
    except DataError as err:
        raise _refuse(err, 2) from None
    except BuildError as err:
        raise _refuse(err, 1) from None


@build_app.command("encoder")
def build_encoder(out: Path | None = typer.Option(None, help="Folder (default: bundles/encoder).")) -> None:
    """Export the packaged all-MiniLM-L6-v2 to ONNX (int8) for summaries' points."""
    from model_build.encoder import DEFAULT_OUT, export

    print(export(out or DEFAULT_OUT))


@build_app.command("batch")
@data_spec_flags
def build_batch(  # noqa: PLR0913 (typer: one argument per CLI option)
    data: Path | None = DataOpt,
    out: Path | None = OutOpt,
    model: str | None = typer.Option(None, help="Encoder id or path (default: the packaged all-MiniLM-L6-v2)."),
    epochs: int | None = typer.Option(None, help="Training epochs."),
    rows: int | None = typer.Option(None, help="Train on the first N rows only (quick check)."),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Training time budget; epochs are cut to fit (default 35 for the NHS "
                                    "file, 10 for a data spec; 0 = none)."),
    retune: str | None = typer.Option(
        None, "--retune", help="Re-package a saved training run (build/batch/VERSION) without training."),
    escalate_share: float | None = typer.Option(
        None, "--escalate-share", min=0.0, max=1.0,
        help="Cascade (\"lane\": \"auto\"): share of comments sent to the transformer (0..1); default: the "
             "smallest share within 0.5 pt of the batch lane on validation, at most 35 %."),
    *,
    spec: SpecArgs,
) -> None:
    """Fine-tune a transformer on the data's labels and sentiment (the same data spec as `build
    instant`), export to ONNX, quantise (int8 CPU, fp16 GPU), gate, bundle.

    Exit 2 with a one-line reason for data it cannot learn from."""
    from model_build.batch import BatchBuildError, run
    from model_build.data import DataError

    try:
        run(data=data, out=out, model=model, epochs=epochs, rows=rows, max_minutes=max_minutes,
            retune_from=Path(retune) if retune else None, escalate_share=escalate_share, spec=spec)
    except DataError as err:
        raise _refuse(err, 2) from None
    except BatchBuildError as err:
        raise _refuse(err, 1) from None


@build_app.command("cascade")
def build_cascade(
    bundle: Path | None = typer.Argument(None, help="Batch bundle folder or bundles root."),
    data: Path | None = DataOpt,
    escalate_share: float | None = typer.Option(None, "--escalate-share", min=0.0, max=1.0,
                                                help="Share of comments sent to the transformer."),
) -> None:
    """Learn the cascade rule of an existing batch bundle (validation fold) into its manifest."""
    from model_build.cascade import main
    from twolane.bundle import BundleError

    try:
        main(([str(bundle)] if bundle else []) + (["--data", str(data)] if data else [])
             + (["--escalate-share", str(escalate_share)] if escalate_share is not None else []))
    except BundleError as err:  # no batch bundle there, or one without the instant lane
        raise _refuse(err, 2) from None


def _export_encoder(out: Path) -> Path:
    """The sentence encoder for summaries' points, exported under `out` (`twolane up`'s first run)."""
    from model_build.encoder import export

    return export(out)


def _build_default_instant(bundles: Path) -> None:
    """The instant bundle from the packaged NHS data, under `bundles` (`twolane up`'s first run)."""
    from model_build.instant import run

    run(out=bundles)


@app.command()
@data_spec_flags
def up(  # noqa: PLR0913 (typer: one argument per CLI option)
    port: int = typer.Option(8000, help="Port of the API."),
    no_batch: bool = typer.Option(False, "--no-batch", help="Do not build or start the batch lane."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Batch-lane model containers the local runner may run at "
        "once, one per waiting shard (TWOLANE_BATCH_WORKERS; default 1); on the Lambda host, "
        "worker invocations at once."),
    batch_host: str | None = typer.Option(
        None, "--batch-host", help="Host of the batch lane: 'sagemaker' (async endpoint: the "
        "local runner around the container, the default) or 'lambda' (the batch-worker Lambda, "
        "one invocation per shard) (TWOLANE_BATCH_INVOKER)."),
    data: Path | None = typer.Option(
        None, "--data", help="A team's labelled comments (CSV, TSV, .xlsx, JSONL; docs/own_data.md): "
        "build that file's models if missing and serve them. Default: the NHS models."),
    *,
    spec: SpecArgs,
) -> None:
    """Run everything locally: build default models if missing, start API, drop folder, batch lane."""
    import os

    from local_stack.stack import up as run_up
    from twolane.settings import get_settings

    if batch_host is not None and batch_host not in ("sagemaker", "lambda"):
        raise typer.BadParameter("--batch-host must be 'sagemaker' or 'lambda'")
    if data is None and not spec.empty:
        raise typer.BadParameter("the data-spec flags need --data FILE")
    if workers is not None:
        os.environ["TWOLANE_BATCH_WORKERS"] = str(workers)
    if batch_host is not None:
        # "local": the local stack's SageMaker stand-in (never a real endpoint client here)
        os.environ["TWOLANE_BATCH_INVOKER"] = "lambda" if batch_host == "lambda" else "local"
    if no_batch:  # the API answers 503 for jobs, as a deployment without the batch lane does
        os.environ["TWOLANE_BATCH_ENABLED"] = "0"
    get_settings.cache_clear()
    batch_build_args: list[str] = []
    if data is not None:  # a team's own file, end to end (twolane_cli.own_data)
        from model_build.data import DataError
        from model_build.instant import BuildError
        from twolane_cli.own_data import prepare

        try:
            batch_build_args = prepare(data, spec)
        except DataError as err:
            raise _refuse(err, 2) from None
        except BuildError as err:
            raise _refuse(err, 1) from None
    run_up(port=port, batch=not no_batch, build_instant=_build_default_instant,
           build_encoder=_export_encoder, batch_build_args=batch_build_args)


@app.command()
def serve(
    bundle: Path | None = typer.Option(None, help="Instant bundle folder or bundles root."),
    port: int = typer.Option(8000),
    host: str = typer.Option("127.0.0.1"),
) -> None:
    """Run the API alone on a given bundle."""
    from local_stack.stack import serve as run_serve

    run_serve(bundle=bundle, port=port, host=host)


@app.command()
def predict(
    file: Path = typer.Argument(..., help="CSV, JSON list or JSONL of comments."),
    out: Path | None = typer.Option(None, help="Where to write results (default: next to FILE)."),
    bundle: Path | None = typer.Option(None, help="Instant bundle folder or bundles root."),
) -> None:
    """Label a file in one go with the instant lane."""
    from local_stack.stack import predict_file

    predict_file(file=file, out=out, bundle=bundle)


@app.command()
def drift(
    file: Path = typer.Argument(..., help="CSV, JSON list or JSONL of comments."),
    bundle: Path = typer.Option(..., help="Instant bundle folder or bundles root."),
    as_json: bool = typer.Option(False, "--json", help='Print {"drifted": bool, "signals": {...}}.'),
) -> None:
    """Does a file look like the bundle's training data? Exit 0 either way, 2 if unreadable."""
    from twolane_cli.drift_report import run

    raise typer.Exit(run(file, bundle, as_json))


@app.command()
def recommend(  # noqa: PLR0913 (typer: one argument per CLI option)
    lane: str = typer.Option("both", help="instant, batch or both."),
    slo_p95_ms: float = typer.Option(1000.0, "--slo-p95-ms", help="p95 latency objective per request."),
    out: Path = typer.Option(Path("bench/recommend"), help="Report folder."),
    env: str = typer.Option("dev,prod", help="Infra configs to update (comma list, or 'none')."),
    aws: bool = typer.Option(False, "--aws", help="Measure on AWS instead: SageMaker Inference "
                             "Recommender (batch) and a Lambda memory sweep (instant)."),
    aws_role_arn: str = typer.Option("", help="--aws: IAM role for Inference Recommender."),
    aws_model_name: str = typer.Option("", help="--aws: SageMaker model of the batch container."),
    aws_payload_url: str = typer.Option("", help="--aws: s3:// tar.gz of sample JSON payloads."),
    aws_function_name: str = typer.Option("", help="--aws: the instant-lane API Lambda."),
    comments_per_week: float = typer.Option(
        5000, "--comments-per-week", help="Batch workload: comments sent a week (NHS team: ~5,000)."),
    jobs_per_week: float = typer.Option(3, "--jobs-per-week", help="Batch workload: jobs a week."),
    max_wait_min: float = typer.Option(
        15, "--max-wait-min", help="Batch workload: results wanted within this many minutes of submission."),
    compare_scale: float = typer.Option(
        100, "--compare-scale", help="Also report the batch host for this many times the volume."),
    allow_assumed: bool = typer.Option(
        False, "--allow-assumed", help="Let hosts whose speed is assumed (GPU speed-up, Serverless "
        "CPU share) be chosen; without it they are shown beside the measured choice."),
    reuse: Path | None = typer.Option(
        None, "--reuse", help="Reuse the measurements of an earlier report.json instead of load-testing."),
) -> None:
    """Load-test each lane, bill a weekly batch workload on each host (async endpoint, Serverless
    Inference, Lambda), pick the cheapest that meets the wait, report, update infra config."""
    envs = tuple(e.strip() for e in env.split(",") if e.strip() and e.strip() != "none")
    if aws:
        from recommender.aws import run_aws

        run_aws(slo_p95_ms, out, lane=lane, role_arn=aws_role_arn, model_name=aws_model_name,
                payload_url=aws_payload_url, function_name=aws_function_name, envs=envs)
        return
    from recommender.billing import Workload
    from recommender.run import run

    try:
        workload = Workload(comments_per_week, jobs_per_week, max_wait_min * 60)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    from twolane.bundle import BundleError

    try:
        run(lane=lane, slo_p95_ms=slo_p95_ms, out=out, envs=envs, workload=workload,
            compare_scale=compare_scale, allow_assumed=allow_assumed, reuse=reuse)
    except BundleError as err:  # nothing to load-test yet: build the lanes first
        raise _refuse(err, 2) from None


@app.command()
def synth(
    env: str = typer.Option("dev", help="Config in infra/config/<env>.json."),
    no_batch: bool = typer.Option(False, "--no-batch",
                                  help="Leave the batch endpoint out (as `cdk deploy -c batch=false`)."),
) -> None:
    """Synthesise the CDK app offline into cdk.out/ (cdk-nag and config validation included)."""
    from infra.app import main

    raise typer.Exit(main(["--env", env] + (["--no-batch"] if no_batch else [])) or 0)


if __name__ == "__main__":
    app()
