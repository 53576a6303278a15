"""Deployment config (load/save/validation), the API-key authorizer, the asset builder's
code-only mode, the batch image choice and the errors for missing models. No synth here: fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.config import (
    CONFIG_DIR,
    ConfigError,
    dump_config,
    load_config,
    save_config,
    validate_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_shipped_configs_load_and_round_trip_byte_for_byte(env):
    cfg = load_config(env)
    assert cfg.env == env and cfg.name == f"Twolane-{env}"
    assert dump_config(cfg) == (CONFIG_DIR / f"{env}.json").read_text()


def test_recommender_style_update_is_saved_and_read_back(tmp_path):
    for env in ("dev", "prod"):
        (tmp_path / f"{env}.json").write_text((CONFIG_DIR / f"{env}.json").read_text())
    cfg = load_config("prod", tmp_path)
    cfg.instant.lambda_memory_mb = 1769
    cfg.batch.instance_type = "ml.g5.xlarge"
    save_config("prod", cfg, tmp_path)
    again = load_config("prod", tmp_path)
    assert (again.instant.lambda_memory_mb, again.batch.instance_type) == (1769, "ml.g5.xlarge")
    text = (tmp_path / "prod.json").read_text()
    assert text.startswith("{\n  \"env\": \"prod\"") and text.endswith("}\n")
    assert load_config("dev", tmp_path) == load_config("dev")  # the other file untouched


@pytest.mark.parametrize("value,words", [
    (20000, "less than or equal to 10240"), (64, "greater than or equal to 128"),
    ("1024", "valid integer"), (1024.5, "valid integer"), (None, "valid integer")])
def test_bad_lambda_memory_is_refused_clearly(value, words):
    with pytest.raises(ConfigError) as e:
        validate_config({"env": "dev", "instant": {"lambda_memory_mb": value}})
    assert "instant.lambda_memory_mb" in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("value", ["g4dn.xlarge", "ml.g4dn", "ML.G4DN.XLARGE", "", "ml..x"])
def test_bad_instance_type_is_refused_clearly(value):
    with pytest.raises(ConfigError) as e:
        validate_config({"env": "dev", "batch": {"instance_type": value}})
    assert "batch.instance_type" in str(e.value) and "ml.<family>.<size>" in str(e.value)


def test_assignment_is_validated_and_save_revalidates(tmp_path):
    cfg = load_config("dev")
    with pytest.raises(ValidationError):
        cfg.instant.lambda_memory_mb = 99999
    with pytest.raises(ConfigError, match="batch.instance_type"):
        save_config("dev", {**cfg.model_dump(mode="json"), "batch": {"instance_type": "x"}},
                    tmp_path)
    with pytest.raises(ConfigError, match="saved as"):
        save_config("dev", load_config("prod"), tmp_path)


def test_unknown_env_typos_and_inconsistencies(tmp_path):
    with pytest.raises(ConfigError, match="unknown env 'staging'"):
        load_config("staging")
    with pytest.raises(ConfigError, match="batch.instnce_type: Extra inputs"):
        validate_config({"env": "dev", "batch": {"instnce_type": "ml.m5.large"}})
    with pytest.raises(ConfigError, match="image_uri is required"):
        validate_config({"env": "dev", "batch": {"image_source": "uri"}})
    with pytest.raises(ConfigError, match="log_retention_days"):
        validate_config({"env": "dev", "monitoring": {"log_retention_days": 31}})
    (tmp_path / "dev.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config("dev", tmp_path)
    with pytest.raises(ConfigError, match="no config file"):
        load_config("prod", tmp_path)


def test_synth_command_prints_the_validation_error_not_a_traceback(tmp_path):
    bad = json.loads((CONFIG_DIR / "dev.json").read_text())
    bad["instant"]["lambda_memory_mb"] = 20000
    (tmp_path / "dev.json").write_text(json.dumps(bad))
    env = {**os.environ, "TWOLANE_INFRA_CONFIG_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "infra.app", "--env", "dev", "--out",
                        str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 2
    assert "instant.lambda_memory_mb: Input should be less than or equal to 10240" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_missing_asset_is_explained(tmp_path):
    from infra.app import check_asset

    with pytest.raises(ConfigError, match="build_lambda_asset"):
        check_asset(tmp_path / "nothing")


def test_missing_models_are_explained_before_the_cdk_starts(tmp_path):
    from infra.app import find_artifacts

    cfg = load_config("dev")
    cfg.instant.bundle = str(tmp_path / "no-bundles")
    with pytest.raises(ConfigError, match="twolane build instant"):
        find_artifacts(cfg)
    asset = tmp_path / "asset"
    from infra.build_lambda_asset import build_code_only

    build_code_only(asset)
    cfg.batch.model_path = str(tmp_path / "no-bundles")
    for host, words in (("lambda", ("twolane build batch", "batch.model_path", "-c batch=false")),
                        ("async_endpoint", ("twolane build batch", "batch.model_data_url",
                                            "-c batch=false"))):
        cfg.batch.host = host  # type: ignore[assignment]
        with pytest.raises(ConfigError) as e:
            find_artifacts(cfg, asset)
        for w in words:
            assert w in str(e.value)
    cfg.batch.enabled = False  # the batch lane off: no model needed
    artifacts, kind = find_artifacts(cfg, asset)
    assert artifacts.model_artifact is None and kind == "prebuilt unknown"
    cfg.batch.enabled = True
    cfg.batch.model_data_url = "s3://my-models/twolane/model.tar.gz"  # ops keep it in S3
    assert find_artifacts(cfg, asset)[0].model_artifact is None


def test_shipped_configs_reserve_no_concurrency_and_serve_no_summaries():
    for env in ("dev", "prod"):
        cfg = load_config(env)
        assert cfg.instant.reserved_concurrency is None
        assert cfg.summaries.enabled is False
    assert validate_config({"env": "prod", "instant": {"reserved_concurrency": 50}}) \
        .instant.reserved_concurrency == 50  # opt-in
    with pytest.raises(ConfigError, match="summaries.enabled"):
        validate_config({"env": "dev", "summaries": {"enabled": True}})


def test_code_only_asset_holds_the_handlers_and_no_cdk_code(tmp_path):
    from infra.app import REQUIRED_IN_ASSET, check_asset
    from infra.build_lambda_asset import build_code_only

    out = tmp_path / "asset"
    info = build_code_only(out)
    assert info["kind"] == "code-only"
    for rel in REQUIRED_IN_ASSET:
        assert (out / rel).is_file()
    assert not list(out.rglob("construct.py")) and not (out / "infra").exists()
    assert check_asset(out)["kind"] == "unknown"  # no marker written by the function itself


def test_authorizer_accepts_known_keys_only():
    sys.path.insert(0, str(REPO / "functions" / "api" / "authorizer"))
    try:
        import handler as authz  # the asset's own module name in the Lambda
    finally:
        sys.path.pop(0)
    from infra.api_keys import key_hash, new_key

    key, other = new_key(), new_key()
    assert key != other and len(key) > 40
    assert key_hash(key) == authz.key_hash(key)
    hashes = {"trust-a": key_hash(key)}
    assert authz.authorize({"x-api-key": key}, hashes) == {
        "isAuthorized": True, "context": {"client": "trust-a"}}
    assert authz.authorize({"X-Api-Key": key}, hashes)["isAuthorized"]  # header case
    for headers in ({"x-api-key": other}, {"x-api-key": ""}, {}, None,
                    {"authorization": key}):
        assert authz.authorize(headers, hashes) == {"isAuthorized": False, "context": {}}
    assert authz.authorize({"x-api-key": key}, {})["isAuthorized"] is False  # no parameter
    # pxtextmining's slow-API clients pass the key as ?code=
    assert authz.authorize({}, hashes, {"code": key})["isAuthorized"]
    assert authz.authorize(None, hashes, {"code": other})["isAuthorized"] is False
    assert authz.authorize({}, hashes, {"target": "ms"})["isAuthorized"] is False
    # A results URL carries the job's results token instead of the key: it opens that job's
    # GET /api/GetResults/<id> only (the same token as the app makes: twolane.api.gate).
    from twolane.api.gate import results_token

    token = results_token(key, "job-1")
    assert token == authz.results_token(key_hash(key), "job-1") and key not in token
    assert authz.authorize({}, hashes, {"code": token}, path="/api/GetResults/job-1") == {
        "isAuthorized": True, "context": {"client": "trust-a"}}
    for path, method in (("/api/GetResults/job-2", "GET"), ("/api/StartContainerInstance", "POST"),
                         ("/api/GetResults/job-1", "POST"), ("/v1/jobs/job-1", "GET")):
        assert authz.authorize({}, hashes, {"code": token}, path=path,
                               method=method)["isAuthorized"] is False

    reads = []
    clock = [0.0]
    authz._cache = None

    def read():
        reads.append(1)
        return hashes

    assert authz.known_hashes(read, lambda: clock[0]) == hashes
    clock[0] = 100.0
    authz.known_hashes(read, lambda: clock[0])
    assert len(reads) == 1  # cached
    clock[0] = 100.0 + authz.CACHE_SECONDS + 1
    authz.known_hashes(read, lambda: clock[0])
    assert len(reads) == 2  # refreshed after CACHE_SECONDS


@pytest.mark.parametrize("instance,accelerator", [
    ("ml.g4dn.xlarge", "gpu"), ("ml.g5.2xlarge", "gpu"), ("ml.g6e.xlarge", "gpu"),
    ("ml.p3.2xlarge", "gpu"), ("ml.c6i.xlarge", "cpu"), ("ml.m5.large", "cpu"),
    ("ml.c7g.xlarge", "cpu")])
def test_batch_image_matches_the_instance(instance, accelerator):
    from infra.batch_lane.endpoint import ONNX_PROVIDERS, image_build_args, pinned_version

    batch = validate_config({"env": "dev", "batch": {"instance_type": instance}}).batch
    assert batch.accelerator == accelerator
    args = image_build_args(batch)
    assert args == {"ACCELERATOR": accelerator, "ORT_VERSION": pinned_version("onnxruntime")}
    assert ONNX_PROVIDERS[accelerator].split(",")[0] == (
        "CUDAExecutionProvider" if accelerator == "gpu" else "CPUExecutionProvider")


def test_neuron_instances_and_the_dlc_are_refused():
    with pytest.raises(ConfigError, match="Neuron"):
        validate_config({"env": "dev", "batch": {"instance_type": "ml.inf2.xlarge"}})
    with pytest.raises(ConfigError, match="batch.image_source"):
        validate_config({"env": "dev", "batch": {"image_source": "dlc"}})


def test_dockerfile_builds_one_onnxruntime_per_accelerator_and_installs_nothing_at_start():
    text = (REPO / "sagemaker" / "Dockerfile").read_text()
    assert "FROM runtime-${ACCELERATOR}" in text
    assert 'pip install "onnxruntime-gpu[cuda,cudnn]==${ORT_VERSION}"' in text
    assert 'pip install "onnxruntime==${ORT_VERSION}"' in text
    entry = [line for line in text.splitlines() if line.startswith(("ENTRYPOINT", "CMD"))]
    assert entry == ['ENTRYPOINT ["python", "/opt/program/serve.py"]', 'CMD ["serve"]']


def test_ecr_uris_are_parsed_for_the_pull_grant():
    from infra.batch_lane.image import parse_ecr_uri

    img = parse_ecr_uri("123456789012.dkr.ecr.eu-west-2.amazonaws.com/team/twolane-batch:gpu-1")
    assert (img.account, img.region, img.repository) == ("123456789012", "eu-west-2",
                                                         "team/twolane-batch")
    assert parse_ecr_uri("123456789012.dkr.ecr.eu-west-2.amazonaws.com/r@sha256:ab").repository \
        == "r"
    assert parse_ecr_uri("public.ecr.aws/x/y:1").repository == ""


# --- the batch lane on Lambda (batch.host "lambda") ---------------------------------------------


def test_lambda_host_fields_default_and_round_trip_as_the_recommender_writes_them(tmp_path):
    b = validate_config({"env": "dev"}).batch
    assert (b.host, b.lambda_memory_mb, b.lambda_timeout_s, b.lambda_reserved_concurrency,
            b.lambda_architecture) == ("async_endpoint", 2048, 900, None, "x86_64")
    for env in ("dev", "prod"):
        (tmp_path / f"{env}.json").write_text((CONFIG_DIR / f"{env}.json").read_text())
    data = json.loads((tmp_path / "prod.json").read_text())
    data["batch"].update(host="lambda", lambda_memory_mb=3008, shard_size=500)  # recommender
    save_config("prod", data, tmp_path)
    again = load_config("prod", tmp_path)
    assert (again.batch.host, again.batch.lambda_memory_mb, again.batch.shard_size) == (
        "lambda", 3008, 500)
    assert dump_config(again) == (tmp_path / "prod.json").read_text()


@pytest.mark.parametrize("field,value,words", [
    ("lambda_memory_mb", 127, "greater than or equal to 128"),
    ("lambda_memory_mb", 10241, "less than or equal to 10240"),
    ("lambda_memory_mb", "2048", "valid integer"),
    ("lambda_timeout_s", 901, "less than or equal to 900"),
    ("lambda_timeout_s", 0, "greater than or equal to 1"),
    ("lambda_reserved_concurrency", 0, "greater than or equal to 1"),
    ("lambda_architecture", "aarch64", "'x86_64' or 'arm64'"),
    ("host", "fargate", "'async_endpoint', 'serverless' or 'lambda'"),
])
def test_bad_lambda_host_fields_are_refused_clearly(field, value, words):
    with pytest.raises(ConfigError) as e:
        validate_config({"env": "dev", "batch": {"host": "lambda", field: value}})
    assert f"batch.{field}" in str(e.value) and words in str(e.value)


def test_lambda_host_needs_no_image():
    """image_uri matters to the async endpoint only."""
    cfg = validate_config({"env": "dev", "batch": {"host": "lambda", "image_source": "uri"}})
    assert cfg.batch.host == "lambda"
    with pytest.raises(ConfigError, match="image_uri is required"):
        validate_config({"env": "dev", "batch": {"image_source": "uri"}})


def test_lambda_host_artifacts_are_found_or_explained(tmp_path, batch_bundle):
    from infra.app import check_asset, find_artifacts
    from infra.build_lambda_asset import REQUIRED_IN_BATCH_ASSET, build_code_only

    asset = tmp_path / "asset"
    build_code_only(asset)
    for rel in REQUIRED_IN_BATCH_ASSET:
        assert (asset / rel).is_file()
    assert check_asset(asset, "batch")["kind"] == "unknown"
    with pytest.raises(ConfigError, match="--lane batch"):
        check_asset(tmp_path / "nothing", "batch")
    cfg = load_config("dev")
    cfg.batch.host = "lambda"
    cfg.batch.model_path = str(tmp_path / "no-bundles")
    with pytest.raises(ConfigError) as e:
        find_artifacts(cfg, asset)
    for words in ("batch worker Lambda", "twolane build batch", "-c batch=false"):
        assert words in str(e.value)
    (tmp_path / "model.tar.gz").write_bytes(b"")
    cfg.batch.model_path = str(tmp_path / "model.tar.gz")
    with pytest.raises(ConfigError, match="not a model.tar.gz"):
        find_artifacts(cfg, asset)
    cfg.batch.model_path = str(batch_bundle)
    artifacts, kind = find_artifacts(cfg, asset)
    assert artifacts.batch_bundle == batch_bundle and artifacts.model_artifact is None
    assert kind == "prebuilt unknown; batch worker: bundled"
    artifacts, kind = find_artifacts(cfg, asset, batch_asset_dir=asset)
    assert artifacts.batch_asset == asset and artifacts.batch_bundle is None


def test_batch_asset_ships_the_cpu_model_and_its_instant_bundle_without_torch(
        tmp_path, batch_bundle, monkeypatch):
    from infra import build_lambda_asset as b
    from twolane.bundle import read_manifest

    reqs = " ".join(b.requirements("batch")).lower()
    for needed in ("onnxruntime", "tokenizers", "numpy", "pydantic", "boto3"):
        assert needed in reqs
    for never in ("torch", "transformers", "scikit-learn", "xgboost", "fastapi", "pandas"):
        assert never not in reqs
    manifest = read_manifest(batch_bundle)
    out = tmp_path / "asset"
    assert b.copy_bundle(out, batch_bundle, "batch") == manifest.version
    shipped = {p.relative_to(out / b.BUNDLE_DIR).as_posix()
               for p in (out / b.BUNDLE_DIR).rglob("*") if p.is_file()}
    gpu_only = {e.file for name, e in manifest.models.items() if name == "fp16"}
    assert gpu_only  # the tiny bundle is exported like the real one: int8 and fp16
    assert shipped == {*manifest.files, "manifest.json"} - gpu_only
    assert "instant/manifest.json" in shipped and manifest.models["int8"].file in shipped
    monkeypatch.setattr(b, "LAMBDA_UNZIPPED_LIMIT", 1024)
    with pytest.raises(ConfigError, match=r"over Lambda's limit of 0 MiB; biggest parts .*bundle"):
        b.check_size(out, "batch")
