"""The batch lane on Lambda (batch.host "lambda"), synthesised once offline (the `lambda_host`
fixture: dev config, worker sized apart from the defaults, code-only assets): the worker, its
async invoke config and exact grants, the invokers' grant and environment, no SageMaker, and
the monitoring; plus cdk-nag and cfn-lint on that template. The async-endpoint host is covered,
unchanged, by tests/unit/test_infra.py and tests/unit/test_infra_prod.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.checks import as_list, cfn_lint, dumps, statements, wildcard_actions

WORKER = "functions.batch_worker.handler.handler"
INVOKERS = ("functions.api.handler.handler", "functions.dropfolder.handler.handler")


@pytest.fixture(scope="module")
def host(lambda_host):
    cfg, result = lambda_host
    return cfg, result, result.template


def resources(template, rtype):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def function(template, handler):
    found = {k: r["Properties"] for k, r in resources(template, "AWS::Lambda::Function").items()
             if r["Properties"].get("Handler") == handler}
    assert len(found) == 1, handler
    return next(iter(found.items()))


def role_statements(template, handler):
    role = function(template, handler)[1]["Role"]["Fn::GetAtt"][0]
    return [st for r in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in r["Properties"]["Roles"]
            for st in r["Properties"]["PolicyDocument"]["Statement"]]


def grants(statements):
    """{(action, resource as JSON)} of Allow statements."""
    return {(a, dumps(r)) for st in statements if st["Effect"] == "Allow"
            for a in as_list(st["Action"]) for r in as_list(st["Resource"])}


def topics(template):
    """(success topic id, error topic id) of the batch lane: the worker's pair."""
    ids = {r["Properties"]["DisplayName"].rsplit(" ", 1)[-1]: k
           for k, r in resources(template, "AWS::SNS::Topic").items()
           if "batch" in r["Properties"].get("DisplayName", "")}
    return ids["succeeded"], ids["failed"]


def bucket_prefix(template, prefix):
    data = next(k for k, r in resources(template, "AWS::S3::Bucket").items()
                if "LoggingConfiguration" in r["Properties"])
    return dumps({"Fn::Join": ["", [{"Fn::GetAtt": [data, "Arn"]}, f"/{prefix}*"]]})


def test_no_nag_findings_lint_problems_or_wildcards(host):
    _, result, tpl = host
    assert result.findings == []
    assert cfn_lint(result.template_path) == []
    assert wildcard_actions(tpl) == []


def test_no_sagemaker_at_all(host):
    _, result, tpl = host
    kinds = {r["Type"] for r in tpl["Resources"].values()}
    assert not [k for k in kinds if k.startswith(("AWS::SageMaker::",
                                                  "AWS::ApplicationAutoScaling::"))]
    assert not [a for _, _, st in statements(tpl) for a in as_list(st.get("Action", []))
                if a.startswith("sagemaker:")]
    assert not [a for a in resources(tpl, "AWS::CloudWatch::Alarm").values()
                if "SageMaker" in dumps(a["Properties"].get("Namespace"))]
    for fn in resources(tpl, "AWS::Lambda::Function").values():
        assert "sagemaker" not in dumps(fn["Properties"].get("Environment", {})).lower()
    assets = json.loads((result.outdir / f"{result.stack_name}.assets.json").read_text())
    assert not assets.get("dockerImages")  # no image to build: no Docker anywhere
    assert not [f for f in assets["files"].values() if f["source"]["path"].endswith(".tar.gz")]


def test_worker_function_env_sizes_and_async_invoke(host):
    cfg, _, tpl = host
    b = cfg.batch
    lid, fn = function(tpl, WORKER)
    assert (fn["MemorySize"], fn["Timeout"]) == (b.lambda_memory_mb, b.lambda_timeout_s) \
        == (3008, 600)
    assert fn["ReservedConcurrentExecutions"] == b.lambda_reserved_concurrency == 20
    assert fn["Runtime"] == "python3.12" and fn["Architectures"] == [b.lambda_architecture]
    success, error = topics(tpl)
    data = next(k for k, r in resources(tpl, "AWS::S3::Bucket").items()
                if "LoggingConfiguration" in r["Properties"])
    assert fn["Environment"]["Variables"] == {
        "TWOLANE_BUCKET": {"Ref": data}, "TWOLANE_AWS_REGION": cfg.region,
        "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": {"Ref": success},
        "TWOLANE_BATCH_ERROR_TOPIC_ARN": {"Ref": error},
        "TWOLANE_BATCH_BUNDLE": "/var/task/bundle"}
    [invoke] = [r["Properties"] for r in resources(tpl, "AWS::Lambda::EventInvokeConfig").values()
                if r["Properties"]["FunctionName"] == {"Ref": lid}]
    assert invoke["MaximumRetryAttempts"] == 0  # a shard runs once, as on the endpoint
    assert invoke["DestinationConfig"] == {"OnFailure": {"Destination": {"Ref": error}}}
    assert invoke["MaximumEventAgeInSeconds"] == 6 * 3600  # waits out a concurrency cap
    assert "OnSuccess" not in invoke["DestinationConfig"]  # the worker publishes success itself


def test_worker_may_do_exactly_what_the_interface_names(host):
    _, _, tpl = host
    success, error = topics(tpl)
    key = next(iter(resources(tpl, "AWS::KMS::Key")))
    logs = next(k for k in resources(tpl, "AWS::Logs::LogGroup") if k.startswith("BatchWorker"))
    data = next(k for k, r in resources(tpl, "AWS::S3::Bucket").items()
                if "LoggingConfiguration" in r["Properties"])
    assert grants(role_statements(tpl, WORKER)) == {
        ("s3:GetObject", bucket_prefix(tpl, "batch/input/")),
        ("s3:PutObject", bucket_prefix(tpl, "batch/output/")),
        ("s3:PutObject", bucket_prefix(tpl, "batch/failures/")),
        ("s3:ListBucket", dumps({"Fn::GetAtt": [data, "Arn"]})),
        ("sns:Publish", dumps({"Ref": success})), ("sns:Publish", dumps({"Ref": error})),
        ("kms:GenerateDataKey", dumps({"Fn::GetAtt": [key, "Arn"]})),
        ("kms:Decrypt", dumps({"Fn::GetAtt": [key, "Arn"]})),
        ("logs:CreateLogStream", dumps({"Fn::GetAtt": [logs, "Arn"]})),
        ("logs:PutLogEvents", dumps({"Fn::GetAtt": [logs, "Arn"]}))}
    [listing] = [st for st in role_statements(tpl, WORKER) if st["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["batch/input/*"]}}
    role = function(tpl, WORKER)[1]["Role"]["Fn::GetAtt"][0]
    assert not tpl["Resources"][role]["Properties"].get("ManagedPolicyArns")


def test_invokers_may_invoke_the_worker_and_nothing_else_new(host):
    cfg, _, tpl = host
    worker, _ = function(tpl, WORKER)
    for handler in INVOKERS:
        env = function(tpl, handler)[1]["Environment"]["Variables"]
        assert env["TWOLANE_BATCH_INVOKER"] == "lambda"
        assert env["TWOLANE_BATCH_FUNCTION"] == {"Ref": worker}
        assert env["TWOLANE_BATCH_SHARD_SIZE"] == str(cfg.batch.shard_size)
        assert not {"TWOLANE_BATCH_ENDPOINT", "TWOLANE_BATCH_MAX_CONCURRENCY",
                    "TWOLANE_BATCH_INVOCATION_TIMEOUT_S"} & set(env)
        sts = role_statements(tpl, handler)
        invoke = [st for st in sts if any(a.startswith("lambda:") for a in as_list(st["Action"]))]
        assert invoke == [{"Action": "lambda:InvokeFunction", "Effect": "Allow",
                           "Resource": {"Fn::GetAtt": [worker, "Arn"]}}]
        assert not [a for st in sts for a in as_list(st["Action"]) if a.startswith("sagemaker:")]
    # nobody else may invoke it
    others = [lid for lid, _, st in statements(tpl)
              if "lambda:InvokeFunction" in as_list(st.get("Action", []))
              and dumps({"Fn::GetAtt": [worker, "Arn"]}) in dumps(st.get("Resource"))]
    assert len(others) == len(INVOKERS)


def test_both_worker_topics_feed_the_notifications_lambda(host):
    _, _, tpl = host
    notes, _ = function(tpl, "functions.notifications.handler.handler")
    subs = [r["Properties"] for r in resources(tpl, "AWS::SNS::Subscription").values()]
    assert {s["TopicArn"]["Ref"] for s in subs} == set(topics(tpl))
    assert all(s["Protocol"] == "lambda" and s["Endpoint"] == {"Fn::GetAtt": [notes, "Arn"]}
               for s in subs)
    for t in topics(tpl):
        assert "KmsMasterKeyId" in tpl["Resources"][t]["Properties"]


def test_worker_alarms_and_dashboard(host):
    cfg, _, tpl = host
    worker, _ = function(tpl, WORKER)
    alarms = [r["Properties"] for r in resources(tpl, "AWS::CloudWatch::Alarm").values()]
    mine = {a["MetricName"]: a for a in alarms
            if {"Name": "FunctionName", "Value": {"Ref": worker}} in a.get("Dimensions", [])}
    assert set(mine) == {"Errors", "Throttles", "AsyncEventAge", "AsyncEventsDropped",
                         "Duration"}
    assert mine["AsyncEventAge"]["Threshold"] == cfg.batch.backlog_age_alarm_s * 1000
    assert mine["Duration"]["Threshold"] == int(cfg.batch.lambda_timeout_s * 1000 * 0.8)
    assert mine["Duration"]["Statistic"] == "Maximum"
    topic = next(k for k, r in resources(tpl, "AWS::SNS::Topic").items()
                 if "alarms" in r["Properties"].get("DisplayName", ""))
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in mine.values())
    body = dumps(only(tpl, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert "AsyncEventAge" in body and "ApproximateBacklogSize" not in body
    outputs = tpl["Outputs"]
    assert [v["Value"] for k, v in outputs.items() if k.startswith("BatchWorkerName")] == [
        {"Ref": worker}]
    assert not [k for k in outputs if k.startswith("BatchEndpointName")]


def only(template, rtype):
    found = resources(template, rtype)
    assert len(found) == 1, rtype
    return next(iter(found.values()))["Properties"]


def test_a_host_the_stack_does_not_build_is_refused_before_synth(tmp_path):
    from infra.app import build_app
    from infra.build_lambda_asset import build_code_only
    from infra.config import ConfigError, load_config

    build_code_only(tmp_path / "asset")
    cfg = load_config("dev")
    cfg.batch.host = "serverless"
    cfg.batch.model_data_url = "s3://my-models/twolane/model.tar.gz"  # no model to pack
    with pytest.raises(ConfigError, match="'async_endpoint' or 'lambda'"):
        build_app(cfg=cfg, asset_dir=tmp_path / "asset", nag=False)


# What the Lambda service itself puts in every function's environment (the ones Settings or
# boto3 could read); the template's variables come on top.
LAMBDA_PROVIDES = {"AWS_REGION": "eu-west-2", "AWS_DEFAULT_REGION": "eu-west-2",
                   "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
                   "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                   "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                   "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
                   "TZ": ":UTC", "PYTHONPATH": "/var/runtime", "_HANDLER": ""}


def test_every_function_loads_its_settings_from_the_template_env(host, monkeypatch, tmp_path,
                                                                 request):
    """Each Python Lambda of the lambda host (API, drop folder, notifications, worker) builds
    twolane.settings.Settings from its template environment plus what Lambda provides, and the
    values are the stack's: its bucket and region, the worker by name for the invokers, the
    worker's topics and the bundle where the asset puts it (/var/task/bundle)."""
    from iam_helpers import environment, refs_for

    from infra.build_lambda_asset import BUNDLE_DIR
    from infra.stack import LAMBDA_TASK_ROOT
    from twolane.bundle import resolve_bundle
    from twolane.jobs.invoker import LambdaInvoker
    from twolane.settings import get_settings
    from twolane.wiring import batch_invoker, batch_worker

    cfg, _, tpl = host
    refs = refs_for(tpl, {})
    data = next(k for k, r in resources(tpl, "AWS::S3::Bucket").items()
                if "LoggingConfiguration" in r["Properties"])
    worker_lid, _ = function(tpl, WORKER)
    success, error = topics(tpl)
    python = sorted(r["Properties"]["Handler"] for r in resources(
        tpl, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler", "").startswith("functions."))
    assert python == sorted([*INVOKERS, WORKER, "functions.notifications.handler.handler"])
    task_bundle = f"{LAMBDA_TASK_ROOT}/{BUNDLE_DIR}"
    request.addfinalizer(get_settings.cache_clear)
    for handler in python:
        for k in [k for k in os.environ if k.startswith(("TWOLANE_", "AWS_"))]:
            monkeypatch.delenv(k)
        env = environment(tpl, handler, refs)
        for k, v in {**LAMBDA_PROVIDES, "_HANDLER": handler, **env}.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        s = get_settings()  # as the handlers read them (and twolane.aws.client for boto3)
        s.api, s.dropfolder, s.batch  # noqa: B018  (each group validates)
        assert (s.bucket, s.aws_region, s.aws_endpoint_url) == (
            refs[data]["Ref"], cfg.region, None), handler
        if handler == WORKER:
            assert env["TWOLANE_BATCH_BUNDLE"] == task_bundle
            assert s.batch_bundle == Path(task_bundle)
            assert (s.batch_success_topic_arn, s.batch_error_topic_arn) == (
                refs[success]["Ref"], refs[error]["Ref"])
            worker = batch_worker(s)  # raises without both topic ARNs
            assert worker.region == cfg.region
            assert worker.s3.meta.region_name == cfg.region
            assert worker.sns.meta.endpoint_url == f"https://sns.{cfg.region}.amazonaws.com"
            # the asset's layout (bundle/ holding manifest.json at the task root): the path
            # names the bundle folder itself, never a bundles root to search
            root = tmp_path / "task"
            (root / BUNDLE_DIR).mkdir(parents=True)
            (root / BUNDLE_DIR / "manifest.json").write_text("{}")
            mapped = root / Path(task_bundle).relative_to(LAMBDA_TASK_ROOT)
            assert resolve_bundle(mapped, "batch") == root / BUNDLE_DIR
        else:
            assert s.instant_bundle == Path(task_bundle)
            assert s.batch.invoker == "lambda" and s.batch.function == refs[worker_lid]["Ref"]
            assert s.batch.shard_size == cfg.batch.shard_size
            assert s.api.batch_enabled and not s.api.summaries_enabled
            assert isinstance(batch_invoker(s), LambdaInvoker)
