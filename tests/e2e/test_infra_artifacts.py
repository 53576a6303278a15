"""The app builds what it ships, with no manual step: the Lambda asset through the CDK's local
bundling (pip for the Lambda platform, no Docker) and the batch model.tar.gz (packed
deterministically from a real batch bundle).

The bundling test needs the package index (pip); it is skipped, saying so, when pip cannot reach
it. The other infrastructure tests pass a prebuilt code-only asset and stay offline."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from infra.app import synth
from infra.batch_lane.model import model_artifact
from infra.build_lambda_asset import MARKER, PLATFORMS, REQUIRED_IN_ASSET, SDK_SET, requirements
from infra.config import load_config

REPO = Path(__file__).resolve().parents[2]


def pip_cannot_reach_the_index(tmp: Path) -> str | None:
    """Why pip cannot fetch a Lambda-platform wheel here (None when it can)."""
    pin = next(r for r in requirements() if r.startswith("mangum"))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "--platform",
           PLATFORMS["x86_64"][0], "-d", str(tmp), pin]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        return "pip download timed out after 180 s"
    return None if p.returncode == 0 else f"pip download failed: {p.stderr.strip()[-300:]}"


def python312() -> str | None:
    """A Python 3.12 interpreter (the Lambda runtime's version), if this machine has one."""
    candidates = [shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for c in filter(None, candidates):
        ok = subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                            capture_output=True, check=False)
        if ok.returncode == 0:
            return c
    return None


@pytest.fixture(scope="module")
def bundled(tmp_path_factory, instant_bundle):
    """`cdk synth` as the CLI would run it, minus the CLI: no --asset-dir, so the CDK bundles
    the Lambda asset itself. Synthesised twice into the same cdk.out."""
    tmp = tmp_path_factory.mktemp("bundled")
    reason = pip_cannot_reach_the_index(tmp / "probe")
    if reason:
        pytest.skip(f"the Lambda bundling path needs the package index: {reason}")
    cfg = load_config("dev")
    cfg.instant.bundle = str(instant_bundle)
    cfg.batch.enabled = False  # the first-deploy-without-batch path (-c batch=false) as well
    out = tmp / "cdk.out"
    first = synth(cfg=cfg, outdir=out)
    marker = next(out.glob(f"asset.*/{MARKER}"))
    built = json.loads(marker.read_text())
    from aws_cdk import AssetStaging

    AssetStaging.clear_asset_hash_cache()  # as a new `cdk synth` process would start
    again = synth(cfg=cfg, outdir=out)
    return cfg, first, again, marker.parent, built


def test_synth_builds_the_lambda_asset_without_docker(bundled):
    _, first, _, asset, built = bundled
    assert first.asset_kind == "bundled" and first.findings == []
    assert built["kind"] == "full" and built["platforms"] == PLATFORMS["x86_64"]
    for rel in (*REQUIRED_IN_ASSET, "bundle/manifest.json", "onnxruntime/__init__.py",
                "fastapi/__init__.py", "mangum/__init__.py"):
        assert (asset / rel).is_file(), rel
    assert not list(asset.rglob("construct.py")) and not (asset / "infra").exists()
    # the AWS SDK ships as one consistent set (boto3 with its own urllib3, jmespath, ...)
    for name in SDK_SET:
        if name in ("python_dateutil",):
            continue
        assert (asset / name).exists() or (asset / f"{name}.py").exists(), name
    # cp312 manylinux wheels, whatever Python runs the synth
    assert list((asset / "onnxruntime" / "capi").glob("*cpython-312-x86_64-linux-gnu.so"))
    assert built["size_bytes"] < 250 * 2**20  # Lambda's unzipped limit
    code = next(r["Properties"]["Code"] for r in first.template["Resources"].values()
                if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"]["Handler"] == "functions.api.handler.handler")
    assert code["S3Key"] == f"{asset.name.removeprefix('asset.')}.zip"


def test_without_the_batch_lane_the_api_is_told_so(bundled):
    _, first, _, _, _ = bundled
    tpl = first.template
    assert not [r for r in tpl["Resources"].values() if r["Type"].startswith("AWS::SageMaker")]
    api = next(r["Properties"] for r in tpl["Resources"].values()
               if r["Type"] == "AWS::Lambda::Function"
               and r["Properties"]["Handler"] == "functions.api.handler.handler")
    assert api["Environment"]["Variables"]["TWOLANE_BATCH_ENABLED"] == "0"


def test_an_unchanged_asset_is_not_built_twice(bundled):
    _, first, again, asset, built = bundled
    assert json.loads((asset / MARKER).read_text())["built_at"] == built["built_at"]
    code = [r["Properties"]["Code"] for t in (first.template, again.template)
            for r in t["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"]["Handler"] == "functions.dropfolder.handler.handler"]
    assert code[0] == code[1]


def test_the_bundled_api_answers_under_python_312(bundled):
    _, _, _, asset, built = bundled
    py = python312()
    if py is None:
        pytest.skip("no Python 3.12 interpreter on this machine to import the cp312 asset")
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(asset)!r}]\n"
        "import boto3, botocore, urllib3\n"
        f"assert all(m.__file__.startswith({str(asset)!r}) for m in (boto3, botocore, urllib3))\n"
        "import functions.api.handler as h\n"
        "body = {'items': [{'comment_id': '1', 'comment_text': 'The nurses were kind'}]}\n"
        "event = {'version': '2.0', 'routeKey': '$default', 'rawPath': '/v1/predict',\n"
        "         'rawQueryString': '', 'headers': {'content-type': 'application/json'},\n"
        "         'requestContext': {'http': {'method': 'POST', 'path': '/v1/predict',\n"
        "             'sourceIp': '1.2.3.4', 'protocol': 'HTTP/1.1', 'userAgent': 't'},\n"
        "             'requestId': 'r', 'stage': '$default', 'routeKey': '$default'},\n"
        "         'body': json.dumps(body), 'isBase64Encoded': False}\n"
        "class Ctx:\n"
        "    function_name = 't'; memory_limit_in_mb = 1024; aws_request_id = 'r'\n"
        "    invoked_function_arn = 'arn:aws:lambda:eu-west-2:123456789012:function:t'\n"
        "out = h.handler(event, Ctx())\n"
        "print(json.dumps({'status': out['statusCode'], 'body': json.loads(out['body'])}))\n")
    env = {"PATH": os.environ.get("PATH", ""), "TWOLANE_INSTANT_BUNDLE": str(asset / "bundle"),
           "AWS_DEFAULT_REGION": "eu-west-2", "POWERTOOLS_SERVICE_NAME": "test"}
    p = subprocess.run([py, "-I", "-S", "-c", script], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == 200
    assert out["body"]["results"][0]["comment_id"] == "1"
    assert (asset / "twolane" / "api" / "page" / "vendor" / "papaparse.min.js").is_file()
    # bytecode for the runtime's Python ships in the asset (/var/task is read-only)
    assert (asset / "twolane" / "api" / "__pycache__" / "app.cpython-312.pyc").is_file()
    assert built["bytecode"] == "cpython-312 unchecked-hash"


@pytest.fixture(scope="module")
def bundled_lambda_host(bundled, batch_bundle):
    """The same synth with batch.host "lambda", into the same cdk.out: the instant asset is
    staged already (same inputs, same hash), so the CDK bundles only the batch worker's asset,
    with pip and no Docker, the tiny batch bundle inside."""
    cfg, first, _, _, _ = bundled
    cfg = cfg.model_copy(deep=True)
    cfg.batch.enabled = True
    cfg.batch.host = "lambda"
    cfg.batch.model_path = str(batch_bundle)
    result = synth(cfg=cfg, outdir=first.outdir)
    code = next(r["Properties"]["Code"] for r in result.template["Resources"].values()
                if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"]["Handler"] == "functions.batch_worker.handler.handler")
    asset = first.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
    return result, asset, json.loads((asset / MARKER).read_text())


def test_synth_builds_the_batch_worker_asset_without_docker(bundled_lambda_host, batch_bundle):
    from infra.build_lambda_asset import REQUIRED_IN_BATCH_ASSET
    from twolane.bundle import read_manifest

    result, asset, built = bundled_lambda_host
    assert result.findings == [] and result.asset_kind == "bundled; batch worker: bundled"
    assert built["kind"] == "full" and built["lane"] == "batch"
    assert built["bundle_version"] == read_manifest(batch_bundle).version
    for rel in (*REQUIRED_IN_BATCH_ASSET, "bundle/manifest.json", "bundle/model.int8.onnx",
                "bundle/tokenizer.json", "bundle/instant/manifest.json",
                "onnxruntime/__init__.py", "tokenizers/__init__.py", "numpy/__init__.py",
                "pydantic/__init__.py", "boto3/__init__.py"):
        assert (asset / rel).is_file(), rel
    for never in ("torch", "transformers", "sklearn", "xgboost", "fastapi", "mangum",
                  "huggingface_hub", "bundle/model.fp16.onnx"):
        assert not (asset / never).exists(), never
    assert built["size_bytes"] < 250 * 2**20
    instant = [r["Properties"]["Code"] for r in result.template["Resources"].values()
               if r["Type"] == "AWS::Lambda::Function"
               and r["Properties"]["Handler"] == "functions.api.handler.handler"]
    assert instant[0]["S3Key"] != f"{asset.name.removeprefix('asset.')}.zip"  # two assets


def test_the_batch_worker_asset_runs_its_handler_on_a_shard_under_python_312(
        bundled_lambda_host, batch_bundle):
    """The asset alone (no venv), under Python 3.12, with the environment the template gives
    the worker (TWOLANE_BATCH_BUNDLE=/var/task/bundle, here the asset's folder): the real
    handler (functions.batch_worker.handler) takes a shard's event against a moto server, loads
    the bundle it ships (model.fp16.onnx left out, instant/ inside), writes the labels the
    whole bundle gives and publishes "Completed" on the success topic."""
    from batchlane_helpers import moto_server

    from infra.stack import LAMBDA_TASK_ROOT
    from twolane.contract import CommentIn
    from twolane.layout import batch_failure_key, batch_output_key, batch_shard_input_key
    from twolane.predictors.batch import BatchPredictor

    result, asset, _ = bundled_lambda_host
    py = python312()
    if py is None:
        pytest.skip("no Python 3.12 interpreter on this machine to import the cp312 asset")
    fn = next(r["Properties"] for r in result.template["Resources"].values()
              if r["Type"] == "AWS::Lambda::Function"
              and r["Properties"]["Handler"] == "functions.batch_worker.handler.handler")
    bundle_env = fn["Environment"]["Variables"]["TWOLANE_BATCH_BUNDLE"]
    texts = ["The nurses were kind", "Parking was impossible", "n/a"]
    items = [{"comment_id": f"c{i}", "comment_text": t} for i, t in enumerate(texts)]
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(asset)!r}]\n"
        "import boto3, numpy, onnxruntime, tokenizers\n"
        f"assert all(m.__file__.startswith({str(asset)!r}) "
        "for m in (boto3, numpy, onnxruntime, tokenizers))\n"
        "import functions.batch_worker.handler as h\n"
        "class Ctx:\n"
        "    function_name = 'w'; memory_limit_in_mb = 3008; aws_request_id = 'r'\n"
        "    invoked_function_arn = 'arn:aws:lambda:eu-west-2:123456789012:function:w'\n"
        "out = h.handler(json.loads(sys.argv[1]), Ctx())\n"
        "print(json.dumps({'out': out, 'hub': 'huggingface_hub' in sys.modules,\n"
        "                  'torch': 'torch' in sys.modules}))\n")
    with moto_server() as endpoint:
        import boto3

        kw = {"region_name": "eu-west-2", "endpoint_url": endpoint}
        s3, sns, sqs = boto3.client("s3", **kw), boto3.client("sns", **kw), \
            boto3.client("sqs", **kw)
        bucket, job = "twolane-asset-test", "0123456789abcdef0123456789abcdef"
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        ok = sns.create_topic(Name="ok")["TopicArn"]
        err = sns.create_topic(Name="err")["TopicArn"]
        queue = sqs.create_queue(QueueName="worker-topics")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        for topic in (ok, err):
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        s3.put_object(Bucket=bucket, Key=batch_shard_input_key(job, 0),
                      Body=json.dumps({"items": items, "target": "ms"}).encode())
        inference = f"{job}-0"
        event = {"inference_id": inference,
                 "input_location": f"s3://{bucket}/{batch_shard_input_key(job, 0)}",
                 "output_location": f"s3://{bucket}/{batch_output_key(inference)}",
                 "failure_location": f"s3://{bucket}/{batch_failure_key(inference)}",
                 "endpoint": "twolane-batch"}
        env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1",
               "TWOLANE_INTRA_OP_THREADS": "1", "AWS_REGION": "eu-west-2",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "TWOLANE_AWS_ENDPOINT_URL": endpoint, "TWOLANE_BUCKET": bucket,
               "TWOLANE_AWS_REGION": "eu-west-2", "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": ok,
               "TWOLANE_BATCH_ERROR_TOPIC_ARN": err,
               "TWOLANE_BATCH_BUNDLE": bundle_env.replace(LAMBDA_TASK_ROOT, str(asset), 1)}
        p = subprocess.run([py, "-I", "-S", "-c", script, json.dumps(event)], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
        assert p.returncode == 0, p.stderr[-2000:]
        assert json.loads(p.stdout.strip().splitlines()[-1]) == {
            "out": {"inference_id": inference, "status": "Completed"},
            "hub": False, "torch": False}
        body = json.loads(s3.get_object(Bucket=bucket, Key=batch_output_key(inference))[
            "Body"].read())
        [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    assert json.loads(message["Body"])["TopicArn"] == ok
    assert json.loads(json.loads(message["Body"])["Message"])["invocationStatus"] == "Completed"
    assert not (asset / "bundle" / "model.fp16.onnx").exists()
    whole = BatchPredictor.from_bundle(batch_bundle, providers=["CPUExecutionProvider"])
    direct = whole.predict([CommentIn(**i) for i in items], target="ms")
    assert [(r["comment_id"], r["labels"]) for r in body["results"]] == \
        [(d.comment_id, d.labels) for d in direct]


def test_model_artifact_is_packed_from_the_batch_bundle_byte_for_byte_repeatably(
        batch_bundle, instant_bundle, tmp_path):
    from model_build.package import pack

    first = model_artifact(batch_bundle, instant_bundle, cache_dir=tmp_path / "a")
    second = model_artifact(batch_bundle, instant_bundle, cache_dir=tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()  # same bundle, same asset hash
    assert model_artifact(batch_bundle, instant_bundle, cache_dir=tmp_path / "a") == first
    with tarfile.open(first) as tar:
        members = tar.getmembers()
        ours = sorted(m.name for m in members)
        assert all(m.mtime == 0 and m.uid == 0 for m in members)
    # the layout model_build.package gives SageMaker: bundle at the root, code/, instant/
    with tarfile.open(pack(batch_bundle, tmp_path / "ref.tar.gz", instant_bundle)) as tar:
        reference = sorted(n.removeprefix("./") for n in tar.getnames())
    assert [n for n in ours if "__pycache__" not in n] == \
        [n for n in reference if "__pycache__" not in n]
    assert "manifest.json" in ours and "code/inference.py" in ours
    # a ready model.tar.gz is shipped as it is
    assert model_artifact(first) == first


def test_a_failed_pip_run_is_one_readable_error(instant_bundle, tmp_path, monkeypatch, capsys):
    import infra.lambda_code
    from infra.app import main
    from infra.config import CONFIG_DIR

    def no_index(*args, **kwargs):
        raise subprocess.CalledProcessError(1, ["pip", "install"])

    monkeypatch.setattr(infra.lambda_code, "build_full", no_index)
    cfg = json.loads((CONFIG_DIR / "dev.json").read_text())
    cfg["instant"]["bundle"] = str(instant_bundle)
    cfg["batch"]["enabled"] = False
    (tmp_path / "dev.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("TWOLANE_INFRA_CONFIG_DIR", str(tmp_path))
    assert main(["--env", "dev", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: the Lambda asset could not be built: pip could not install" in err
    assert "package index" in err and "Traceback" not in err


def test_commands_that_deploy_nothing_need_no_models(tmp_path):
    """`cdk destroy` / `cdk ls` (the CLI sets aws:cdk:bundling-stacks to []) synthesise on a
    machine with no bundles at all: nothing is built, nothing is required. Run as the CLI runs
    the app: a process with CDK_OUTDIR and CDK_CONTEXT_JSON."""
    from infra.config import CONFIG_DIR

    cfg = json.loads((CONFIG_DIR / "prod.json").read_text())
    cfg["instant"]["bundle"] = cfg["batch"]["model_path"] = str(tmp_path / "no-bundles")
    (tmp_path / "prod.json").write_text(json.dumps(cfg))

    def app(context: dict) -> subprocess.CompletedProcess:
        env = {**os.environ, "TWOLANE_INFRA_CONFIG_DIR": str(tmp_path),
               "CDK_OUTDIR": str(tmp_path / "out"), "CDK_CONTEXT_JSON": json.dumps(context)}
        return subprocess.run([sys.executable, "-m", "infra.app"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    destroy = app({"env": "prod", "aws:cdk:bundling-stacks": []})
    assert destroy.returncode == 0, destroy.stderr[-2000:]
    assert (tmp_path / "out" / "Twolane-prod.template.json").is_file()
    assert not list((tmp_path / "out").glob("asset.*.tar.gz"))  # no model packed
    deploy = app({"env": "prod", "aws:cdk:bundling-stacks": ["**"]})  # deploy, synth, diff
    assert deploy.returncode == 2 and "twolane build instant" in deploy.stderr
    cfg["batch"]["host"] = "lambda"  # the same for the batch worker's asset
    (tmp_path / "prod.json").write_text(json.dumps(cfg))
    destroy = app({"env": "prod", "aws:cdk:bundling-stacks": []})
    assert destroy.returncode == 0, destroy.stderr[-2000:]
