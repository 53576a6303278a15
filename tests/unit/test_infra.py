"""The CDK app, synthesised once offline (dev config, code-only Lambda asset, no Docker, no
network): what matters for scale-to-zero, security and the drop folder, plus cdk-nag and
cfn-lint on the real template."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from infra_helpers import endpoint_host

from infra.app import feature_flags
from infra.batch_lane.endpoint import pinned_version
from infra.checks import as_list, cfn_lint, dumps, statements, synth_offline, wildcard_actions
from infra.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    cfg = endpoint_host(load_config("dev"))
    result = synth_offline(tmp_path_factory.mktemp("infra-dev"), cfg)
    return cfg, result, result.template


@pytest.fixture(scope="module")
def acknowledged(dev):
    from infra.common import ACKNOWLEDGED

    return list(ACKNOWLEDGED)  # of the dev synth (the next synth clears the list)


def resources(template, rtype):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def only(template, rtype):
    found = resources(template, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {list(found)}"
    return next(iter(found.values()))["Properties"]


def test_cdk_nag_has_no_unacknowledged_findings(dev):
    _, result, _ = dev
    assert result.findings == []


def test_cfn_lint_is_clean(dev):
    _, result, _ = dev
    assert cfn_lint(result.template_path) == []


def test_batch_endpoint_scales_to_zero_and_wakes_up(dev):
    from aws_cdk.assertions import Match, Template

    cfg, _, tpl = dev
    t = Template.from_json(tpl)
    t.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {
        "MinCapacity": 0, "MaxCapacity": cfg.batch.max_instances,
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"})
    # follows the load on the metric async endpoints do publish
    t.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": cfg.batch.backlog_target_per_instance,
            "ScaleInCooldown": cfg.batch.scale_in_cooldown_s,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker", "Statistic": "Average"}}})
    # wakes from zero: step scaling +1 driven by the HasBacklogWithoutCapacity alarm
    steps = {k: r for k, r in resources(tpl, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
             if r["Properties"]["PolicyType"] == "StepScaling"}
    assert len(steps) == 1
    step_id, step = next(iter(steps.items()))
    assert step["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    wake = [r["Properties"] for r in resources(tpl, "AWS::CloudWatch::Alarm").values()
            if r["Properties"].get("MetricName") == "HasBacklogWithoutCapacity"]
    assert len(wake) == 1
    assert wake[0]["AlarmActions"] == [{"Ref": step_id}]
    assert wake[0]["Namespace"] == "AWS/SageMaker" and wake[0]["Threshold"] == 1
    assert wake[0]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert Match  # imported for readability of has_resource_properties partial matching


def test_async_endpoint_config(dev):
    cfg, _, tpl = dev
    ec = only(tpl, "AWS::SageMaker::EndpointConfig")
    a = ec["AsyncInferenceConfig"]
    assert a["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == \
        cfg.batch.max_concurrent_invocations_per_instance
    out = a["OutputConfig"]
    assert "/batch/output" in dumps(out["S3OutputPath"])
    assert "/batch/failures" in dumps(out["S3FailurePath"])
    topics = resources(tpl, "AWS::SNS::Topic")
    assert out["NotificationConfig"]["SuccessTopic"]["Ref"] in topics
    assert out["NotificationConfig"]["ErrorTopic"]["Ref"] in topics
    assert ec["ProductionVariants"][0]["InstanceType"] == cfg.batch.instance_type
    # both topics feed the job-notification Lambda
    subs = resources(tpl, "AWS::SNS::Subscription")
    assert {s["Properties"]["TopicArn"]["Ref"] for s in subs.values()} == {
        out["NotificationConfig"]["SuccessTopic"]["Ref"],
        out["NotificationConfig"]["ErrorTopic"]["Ref"]}
    assert all(s["Properties"]["Protocol"] == "lambda" for s in subs.values())


def test_batch_image_is_built_for_the_gpu_instance_with_nothing_installed_at_start(dev):
    cfg, result, tpl = dev
    assert cfg.batch.instance_type.startswith("ml.g") and cfg.batch.accelerator == "gpu"
    model = only(tpl, "AWS::SageMaker::Model")["PrimaryContainer"]
    assert "cdk-hnb659fds-container-assets" in dumps(model["Image"])  # built by cdk deploy
    images = json.loads((result.outdir / f"{result.stack_name}.assets.json").read_text())[
        "dockerImages"]
    assert len(images) == 1
    source = next(iter(images.values()))["source"]
    assert source["dockerFile"] == "sagemaker/Dockerfile"
    assert source["dockerBuildArgs"] == {"ACCELERATOR": "gpu",
                                         "ORT_VERSION": pinned_version("onnxruntime")}
    assert source["platform"] == "linux/amd64"
    # the build context holds what the Dockerfile copies, nothing else
    context = result.outdir / source["directory"]
    top = sorted(p.name for p in context.iterdir())
    assert top == ["constraints.txt", "sagemaker", "twolane"], top
    env = model["Environment"]
    assert env["TWOLANE_ONNX_PROVIDERS"] == "CUDAExecutionProvider,CPUExecutionProvider"
    assert env["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == str(cfg.batch.invocation_timeout_s)
    assert "SAGEMAKER_PROGRAM" not in env  # no DLC, no code/requirements.txt installed at start
    variant = only(tpl, "AWS::SageMaker::EndpointConfig")["ProductionVariants"][0]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == \
        cfg.batch.container_startup_timeout_s
    assert variant["ModelDataDownloadTimeoutInSeconds"] == cfg.batch.model_download_timeout_s


def test_model_data_is_an_asset_the_endpoint_alone_may_read(dev):
    _, result, tpl = dev
    url = only(tpl, "AWS::SageMaker::Model")["PrimaryContainer"]["ModelDataUrl"]
    files = json.loads((result.outdir / f"{result.stack_name}.assets.json").read_text())["files"]
    model = [f for f in files.values() if f["source"]["path"].endswith(".tar.gz")]
    assert len(model) == 1  # uploaded by cdk deploy before CloudFormation runs
    dest = next(iter(model[0]["destinations"].values()))
    assert url == {"Fn::Sub": f"s3://{dest['bucketName']}/{dest['objectKey']}"}
    readers = [(lid, st) for lid, _, st in statements(tpl)
               if dest["objectKey"] in dumps(st.get("Resource"))]
    assert len(readers) == 1
    lid, st = readers[0]
    assert as_list(st["Action"]) == ["s3:GetObject"]
    role = tpl["Resources"][lid]["Properties"]["Roles"][0]["Ref"]
    assert "sagemaker.amazonaws.com" in dumps(tpl["Resources"][role]["Properties"])
    assert "models/batch" not in dumps(tpl)  # nothing expects a manual upload any more


def test_every_acknowledgement_names_a_resource_that_exists(dev, acknowledged):
    _, _, tpl = dev
    named = [(path, rule, ref) for path, rule, _ in acknowledged
             for ref in re.findall(r"<([A-Za-z0-9]+)\.Arn>", rule)]
    assert named, "expected resource-scoped acknowledgements"
    missing = [(path, rule) for path, rule, ref in named if ref not in tpl["Resources"]]
    assert missing == []


def test_cdk_json_sets_every_recommended_feature_flag():
    import aws_cdk

    tgz = next(Path(aws_cdk.__file__).parent.glob("_jsii/aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(tgz) as tar:
        recommended = json.load(tar.extractfile("package/recommended-feature-flags.json"))
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    assert {k: context.get(k) for k in recommended} == recommended
    assert feature_flags() == {k: v for k, v in context.items() if k.startswith("@aws-cdk")}


def test_buckets_are_encrypted_private_tls_only_and_logged(dev):
    _, _, tpl = dev
    buckets = resources(tpl, "AWS::S3::Bucket")
    assert len(buckets) == 2
    for b in buckets.values():
        p = b["Properties"]
        assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    logged = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(logged) == 1  # the data bucket logs to the access-log bucket
    tls_only = set()
    for pol in resources(tpl, "AWS::S3::BucketPolicy").values():
        for st in pol["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st.get("Condition", {}).get("Bool", {}).get(
                    "aws:SecureTransport") == "false":
                tls_only.add(pol["Properties"]["Bucket"]["Ref"])
    assert tls_only == set(buckets)


def test_lifecycle_expires_inputs_and_uncollected_results(dev):
    cfg, _, tpl = dev
    st = cfg.storage
    data = [b["Properties"] for b in resources(tpl, "AWS::S3::Bucket").values()
            if "LoggingConfiguration" in b["Properties"]][0]
    rules = {r["Prefix"]: r for r in data["LifecycleConfiguration"]["Rules"]}
    expected = {"inbox/": st.inbox_expiry_days, "outbox/": st.outbox_expiry_days,
                "failed/": st.failed_expiry_days, "batch/input/": st.job_input_expiry_days,
                "batch/output/": st.job_result_expiry_days,
                "batch/failures/": st.job_result_expiry_days, "jobs/": st.job_record_expiry_days}
    assert {p: r["ExpirationInDays"] for p, r in rules.items()} == expected
    from twolane.layout import batch_shard_input_key

    assert batch_shard_input_key("j", 3).startswith("batch/input/")  # shard inputs expire too
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_every_prefix_holding_comment_text_expires_on_aws(dev):
    """Issue 29, on AWS: what the local stack's sweep does at start, the bucket's lifecycle
    does there. Every prefix that can hold comment text (drop-folder inputs and rejected
    copies, job inputs and summary plans) expires, and an upload that never completed is
    aborted after a day (the async endpoint writes only under batch/output|failures/:
    test_async_endpoint_config)."""
    from twolane.layout import BATCH_FAILURES, BATCH_INPUT, BATCH_OUTPUT, FAILED, INBOX

    cfg, _, tpl = dev
    data = [b["Properties"] for b in resources(tpl, "AWS::S3::Bucket").values()
            if "LoggingConfiguration" in b["Properties"]][0]
    rules = {r["Prefix"]: r for r in data["LifecycleConfiguration"]["Rules"]}
    for prefix in (INBOX, FAILED, BATCH_INPUT, BATCH_OUTPUT, BATCH_FAILURES):
        rule = rules[prefix]
        assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] >= 1, prefix
        assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1, prefix
    assert rules[BATCH_INPUT]["ExpirationInDays"] <= cfg.storage.job_result_expiry_days


def test_no_wildcard_iam_actions(dev):
    _, _, tpl = dev
    assert wildcard_actions(tpl) == []
    # and the check does catch one
    probe = {"Resources": {"P": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}}}}}
    assert wildcard_actions(probe) == [("P", "s3:*")]


def test_drop_folder_is_notified_for_inbox_only_with_a_dead_letter_queue(dev):
    cfg, _, tpl = dev
    fns = resources(tpl, "AWS::Lambda::Function")
    drop = [k for k, r in fns.items()
            if r["Properties"]["Handler"] == "functions.dropfolder.handler.handler"]
    assert len(drop) == 1
    notif = only(tpl, "Custom::S3BucketNotifications")["NotificationConfiguration"]
    confs = notif["LambdaFunctionConfigurations"]
    assert len(confs) == 1
    assert confs[0]["LambdaFunctionArn"] == {"Fn::GetAtt": [drop[0], "Arn"]}
    assert confs[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "inbox/"}]
    assert confs[0]["Events"] == ["s3:ObjectCreated:*"]
    invoke = [r["Properties"] for r in resources(tpl, "AWS::Lambda::EventInvokeConfig").values()
              if r["Properties"]["FunctionName"] == {"Ref": drop[0]}]
    assert len(invoke) == 1
    assert invoke[0]["MaximumRetryAttempts"] == cfg.instant.dropfolder_retry_attempts
    dest = invoke[0]["DestinationConfig"]["OnFailure"]["Destination"]
    assert dest["Fn::GetAtt"][0] in resources(tpl, "AWS::SQS::Queue")
    # every asynchronously invoked function (S3, SNS) keeps its failures
    handlers_with_dlq = {fns[i["FunctionName"]["Ref"]]["Properties"]["Handler"]
                         for i in (r["Properties"] for r in resources(
                             tpl, "AWS::Lambda::EventInvokeConfig").values())}
    assert handlers_with_dlq == {"functions.dropfolder.handler.handler",
                                 "functions.notifications.handler.handler"}


def test_lambdas_run_python_312_with_the_bundle_in_the_asset(dev):
    cfg, _, tpl = dev
    ours = {k: r["Properties"] for k, r in resources(tpl, "AWS::Lambda::Function").items()
            if r["Properties"].get("Handler", "").startswith(("functions.", "handler."))}
    assert len(ours) == 4  # API, authorizer, drop folder, notifications
    for p in ours.values():
        assert p["Runtime"] == "python3.12"
        assert p["Architectures"] == [cfg.instant.architecture]
        assert "LoggingConfig" in p
    api = next(p for p in ours.values() if p["Handler"] == "functions.api.handler.handler")
    assert api["MemorySize"] == cfg.instant.lambda_memory_mb
    assert "ReservedConcurrentExecutions" not in api  # opt-in (account quotas)
    env = api["Environment"]["Variables"]
    assert env["TWOLANE_INSTANT_BUNDLE"] == "/var/task/bundle"
    assert env["TWOLANE_SENTENCE_ENCODER"] == "/var/task/encoder"  # summaries' points
    assert env["TWOLANE_BATCH_INVOKER"] == "sagemaker"
    assert env["TWOLANE_BATCH_ENABLED"] == "1"
    # the name twolane.settings reads (batch_invocation_timeout_s), as the invoker sends it
    assert env["TWOLANE_BATCH_INVOCATION_TIMEOUT_S"] == str(cfg.batch.invocation_timeout_s)
    assert env["TWOLANE_SUMMARIES_ENABLED"] == "0"  # no LLM endpoint: /v1/summaries says so
    assert env["TWOLANE_BATCH_SHARD_SIZE"] == str(cfg.batch.shard_size)  # jobs split into shards
    for lg in resources(tpl, "AWS::Logs::LogGroup").values():
        assert lg["Properties"]["RetentionInDays"] == cfg.monitoring.log_retention_days


def test_http_api_needs_an_api_key_and_is_throttled(dev):
    cfg, _, tpl = dev
    routes = {r["Properties"]["RouteKey"]: r["Properties"]
              for r in resources(tpl, "AWS::ApiGatewayV2::Route").values()}
    # The web page's GETs (a browser cannot send x-api-key to open a page) and /health are open,
    # GET and HEAD; every other route needs a key: x-api-key, or ?code= on the slow API.
    open_routes = {k: routes.pop(k) for k in (f"{m} {p}" for m in ("GET", "HEAD")
                                              for p in ("/", "/page/{proxy+}", "/health"))}
    assert all(r["AuthorizationType"] == "NONE" for r in open_routes.values())
    assert set(routes) == {"$default", "ANY /api/{proxy+}"}  # the latter: pxtextmining's slow API
    auths = {k: r["Properties"] for k, r in resources(tpl, "AWS::ApiGatewayV2::Authorizer").items()}
    sources = {}
    for route in routes.values():
        assert route["AuthorizationType"] == "CUSTOM" and "AuthorizerId" in route
        auth_id = route["AuthorizerId"]["Ref"]
        sources[route["RouteKey"]] = auths[auth_id]["IdentitySource"]
    assert sources == {"$default": ["$request.header.x-api-key"],
                       # the path too: a results token's cached "yes" answers for its job only
                       "ANY /api/{proxy+}": ["$request.querystring.code", "$context.path"]}
    for auth in auths.values():
        assert auth["EnableSimpleResponses"] is True
        assert auth["AuthorizerResultTtlInSeconds"] == cfg.instant.auth_cache_ttl_s
    stage = only(tpl, "AWS::ApiGatewayV2::Stage")
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": cfg.instant.throttle_burst_limit,
        "ThrottlingRateLimit": cfg.instant.throttle_rate_limit}
    assert "DestinationArn" in stage["AccessLogSettings"]


def test_jobs_api_may_invoke_only_its_endpoint_and_write_inputs(dev):
    _, _, tpl = dev
    fns = resources(tpl, "AWS::Lambda::Function")
    api_role = next(r["Properties"]["Role"]["Fn::GetAtt"][0] for r in fns.values()
                    if r["Properties"]["Handler"] == "functions.api.handler.handler")
    pols = [r["Properties"]["PolicyDocument"]["Statement"]
            for r in resources(tpl, "AWS::IAM::Policy").values()
            if {"Ref": api_role} in r["Properties"]["Roles"]]
    sts = [s for p in pols for s in p]
    invoke = [s for s in sts if "sagemaker:InvokeEndpointAsync" in as_list(s["Action"])]
    assert len(invoke) == 1
    assert ":endpoint/twolane-dev-batch-" in dumps(invoke[0]["Resource"])
    assert "*" not in dumps(invoke[0]["Resource"])
    put = [s for s in sts if "s3:PutObject" in as_list(s["Action"])
           and "/batch/input/*" in dumps(s["Resource"])]
    assert put
    assert not any("sagemaker:InvokeEndpoint" in as_list(s["Action"]) for s in sts)  # async only
    # every other sagemaker grant anywhere is scoped too
    for lid, _, st in statements(tpl):
        for a in as_list(st.get("Action", [])):
            if a.startswith("sagemaker:"):
                assert st["Resource"] != "*", lid


def test_monitoring_dashboard_and_alarms(dev):
    cfg, _, tpl = dev
    dash = only(tpl, "AWS::CloudWatch::Dashboard")
    body = dumps(dash["DashboardBody"])
    for metric in ("Latency", "Errors", "ApproximateBacklogSize", "CPUUtilization"):
        assert metric in body
    alarms = [r["Properties"] for r in resources(tpl, "AWS::CloudWatch::Alarm").values()]
    age = [a for a in alarms if a.get("MetricName") == "ApproximateAgeOfOldestRequest"]
    assert len(age) == 1 and age[0]["Threshold"] == cfg.batch.backlog_age_alarm_s
    topics = resources(tpl, "AWS::SNS::Topic")
    alarm_topic = [k for k, r in topics.items() if "alarms" in r["Properties"].get(
        "DisplayName", "")]
    assert len(alarm_topic) == 1
    errors = [a for a in alarms if a.get("MetricName") == "Errors"]
    assert len(errors) == 4
    for a in errors + age:
        assert a["AlarmActions"] == [{"Ref": alarm_topic[0]}]


def test_drift_alarm_is_on_the_dashboard(dev):
    from twolane import drift

    _, _, tpl = dev
    alarms = {k: r["Properties"] for k, r in resources(tpl, "AWS::CloudWatch::Alarm").items()}
    hit = [(k, a) for k, a in alarms.items() if a.get("MetricName") == drift.DRIFTED_METRIC]
    assert len(hit) == 1
    key, a = hit[0]
    assert a["Namespace"] == drift.METRIC_NAMESPACE and a["Threshold"] == 1
    assert a["Dimensions"] == [{"Name": "service", "Value": drift.METRIC_SERVICE}]
    body = dumps(only(tpl, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert drift.DRIFTED_METRIC in body and drift.METRIC_NAMES["known_share"] in body
    assert key in body  # the alarm status widget lists it
