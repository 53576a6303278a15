"""`AsyncEndpoint`: a SageMaker asynchronous inference endpoint that scales to zero.

CfnModel -> CfnEndpointConfig (AsyncInferenceConfig: S3 output/failure paths, SNS success/error
topics (`BatchTopics`, as the Lambda host makes them), MaxConcurrentInvocationsPerInstance)
-> CfnEndpoint, plus Application Auto Scaling:

* a ScalableTarget with MinCapacity 0;
* target tracking on `ApproximateBacklogSizePerInstance` (customized metric) to follow the load
  and scale back in to 0 when the backlog is empty;
* step scaling driven by an alarm on `HasBacklogWithoutCapacity` to wake the endpoint from 0.
  Target tracking alone never wakes it: with no instance, backlog *per instance* is undefined.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sm
from constructs import Construct

from infra.batch_lane.image import parse_ecr_uri
from infra.batch_lane.topics import BatchTopics
from infra.common import Shared, acknowledge, logical_id, retention
from infra.config import (
    SCALING_METRIC_PERIOD_S,
    WAKE_ALARM_EVALUATION_PERIODS,
    BatchConfig,
    ConfigError,
)
from infra.storage import BATCH_FAILURES, BATCH_INPUT, BATCH_OUTPUT, Storage

REPO_ROOT = Path(__file__).resolve().parents[2]
VARIANT = "AllTraffic"
NAMESPACE = "AWS/SageMaker"
# Application Auto Scaling's service-linked role for SageMaker; naming it makes CloudFormation
# create it on first use (a plain role would get no permissions to scale the endpoint).
SCALING_SLR = ("arn:{partition}:iam::{account}:role/aws-service-role/"
               "sagemaker.application-autoscaling.amazonaws.com/"
               "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")


class AsyncEndpoint(Construct):
    """`model_artifact`: a local model.tar.gz shipped as a CDK asset (the default), or None
    when `batch.model_data_url` names one in S3."""

    def __init__(self, scope: Construct, id: str, *, shared: Shared, storage: Storage,
                 endpoint_name: str, batch: BatchConfig, model_artifact: Path | None,
                 container_env: Mapping[str, str] | None = None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.endpoint_name = endpoint_name
        self.batch = batch
        bucket = storage.bucket

        # Completion topics: SageMaker publishes one message per request to one of them.
        self.topics = BatchTopics.create(self, shared, endpoint_name)
        self.success_topic = self.topics.success_topic
        self.error_topic = self.topics.error_topic

        # Endpoint logs: created here so they get a retention period.
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/sagemaker/Endpoints/{endpoint_name}",
            retention=retention(shared.cfg.monitoring.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY)

        role = iam.Role(self, "ExecutionRole",
                        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=f"SageMaker execution role of {endpoint_name}")
        self.role = role
        model_data_url = self._model_data(batch, model_artifact, role)
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.object_arn(BATCH_INPUT)]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[storage.object_arn(BATCH_OUTPUT), storage.object_arn(BATCH_FAILURES)]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["sns:Publish"],
            resources=[self.success_topic.topic_arn, self.error_topic.topic_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[shared.key.key_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[self.log_group.log_group_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": [
                "/aws/sagemaker/Endpoints", NAMESPACE]}}))
        image_uri = self._image(batch, role)
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "cloudwatch:PutMetricData and ecr:GetAuthorizationToken support no resource-"
                    "level permissions; PutMetricData is limited by a namespace condition.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/batch/input/*]",
                    "The endpoint reads any request the jobs API writes under batch/input/.")
        acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/batch/output/*]",
                    "The endpoint writes results under batch/output/ with names SageMaker picks.")
        acknowledge(role,
                    f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/batch/failures/*]",
                    "The endpoint writes error bodies under batch/failures/ with names SageMaker "
                    "picks.")

        # sagemaker/serve.py reads the model from /opt/ml/model; one worker per concurrent
        # invocation SageMaker sends; a request may run as long as SageMaker waits for it.
        env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(batch.max_concurrent_invocations_per_instance),
               "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(batch.invocation_timeout_s),
               "TWOLANE_ONNX_PROVIDERS": ONNX_PROVIDERS[batch.accelerator],
               **(container_env or {})}
        self.model = sm.CfnModel(
            self, "Model",
            execution_role_arn=role.role_arn,
            primary_container=sm.CfnModel.ContainerDefinitionProperty(
                image=image_uri, model_data_url=model_data_url, environment=env),
        )
        # The endpoint pulls the image and model as soon as it is created: policy first.
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.model.node.add_dependency(policy)

        self.config = sm.CfnEndpointConfig(
            self, "Config",
            production_variants=[sm.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT, model_name=self.model.attr_model_name,
                instance_type=batch.instance_type,
                initial_instance_count=1,  # async endpoints start with 1; scaling takes it to 0
                initial_variant_weight=1.0,
                # Every scale-out from zero pulls the image, downloads the model and waits for
                # /ping: bounded by these, not by SageMaker's defaults.
                container_startup_health_check_timeout_in_seconds=(
                    batch.container_startup_timeout_s),
                model_data_download_timeout_in_seconds=batch.model_download_timeout_s)],
            async_inference_config=sm.CfnEndpointConfig.AsyncInferenceConfigProperty(
                client_config=sm.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                    max_concurrent_invocations_per_instance=(
                        batch.max_concurrent_invocations_per_instance)),
                output_config=sm.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                    s3_output_path=bucket.s3_url_for_object(BATCH_OUTPUT.rstrip("/")),
                    s3_failure_path=bucket.s3_url_for_object(BATCH_FAILURES.rstrip("/")),
                    notification_config=sm.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                        success_topic=self.success_topic.topic_arn,
                        error_topic=self.error_topic.topic_arn)),
            ),
        )
        self.endpoint = sm.CfnEndpoint(self, "Endpoint", endpoint_name=endpoint_name,
                                       endpoint_config_name=self.config.attr_endpoint_config_name)
        self.endpoint.node.add_dependency(self.log_group)
        self.endpoint_arn = stack.format_arn(service="sagemaker", resource="endpoint",
                                             resource_name=endpoint_name.lower())
        self._scaling(stack)

    # -- model data and image ----------------------------------------------------------------
    def _model_data(self, batch: BatchConfig, artifact: Path | None, role: iam.Role) -> str:
        """The model.tar.gz URL, readable by the execution role (that one object only)."""
        stack = Stack.of(self)
        if artifact is None:
            if not batch.model_data_url:
                raise ConfigError("the batch lane needs batch.model_data_url or a model artifact")
            url = batch.model_data_url
            role.add_to_policy(iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[_object_arn(stack, url)]))
            return url
        self.model_asset = s3_assets.Asset(self, "ModelData", path=str(artifact),
                                           display_name="batch model.tar.gz")
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[self.model_asset.bucket.arn_for_objects(self.model_asset.s3_object_key)]))
        return self.model_asset.s3_object_url

    def _image(self, batch: BatchConfig, role: iam.Role) -> str:
        stack = Stack.of(self)
        if batch.image_source == "asset":
            context = (REPO_ROOT / batch.image_context).resolve()
            if not (context / batch.image_dockerfile).is_file():
                raise ConfigError(
                    f"batch.image_source is 'asset' but {context / batch.image_dockerfile} does "
                    "not exist; set batch.image_source to 'uri' (with batch.image_uri)")
            asset = ecr_assets.DockerImageAsset(
                self, "Image", directory=str(context),
                file=batch.image_dockerfile, platform=ecr_assets.Platform.LINUX_AMD64,
                build_args=image_build_args(batch),
                exclude=_DOCKER_EXCLUDE, ignore_mode=IgnoreMode.DOCKER,
                display_name=f"batch image ({batch.accelerator})")
            asset.repository.grant_pull(role)
            return asset.image_uri
        image = parse_ecr_uri(batch.image_uri or "")
        if image.repository:
            role.add_to_policy(iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                         "ecr:BatchCheckLayerAvailability"],
                resources=[stack.format_arn(service="ecr", account=image.account,
                                            region=image.region or None,
                                            resource="repository",
                                            resource_name=image.repository)]))
            role.add_to_policy(iam.PolicyStatement(
                actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        return image.uri

    # -- scaling -------------------------------------------------------------------------
    def metric(self, name: str, statistic: str = "Average",
               period_s: int = SCALING_METRIC_PERIOD_S,
               variant: bool = False) -> cw.Metric:
        dims = {"EndpointName": self.endpoint.attr_endpoint_name}
        if variant:
            dims["VariantName"] = VARIANT
        return cw.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map=dims,
                         statistic=statistic, period=Duration.seconds(period_s))

    def _scaling(self, stack: Stack) -> None:
        b = self.batch
        slr = iam.Role.from_role_arn(
            self, "ScalingRole",
            SCALING_SLR.format(partition=stack.partition, account=stack.account), mutable=False)
        self.scalable_target = appscaling.ScalableTarget(
            self, "ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint.attr_endpoint_name}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=b.min_instances, max_capacity=b.max_instances, role=slr)

        # Follow the load; scale in (to 0) when the backlog per instance falls under target.
        self.scalable_target.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=b.backlog_target_per_instance,
            custom_metric=self.metric("ApproximateBacklogSizePerInstance"),
            scale_in_cooldown=Duration.seconds(b.scale_in_cooldown_s),
            scale_out_cooldown=Duration.seconds(b.scale_out_cooldown_s),
        )

        # Wake from zero: requests are waiting and no instance is there to take them.
        wake = appscaling.StepScalingAction(
            self, "WakeFromZero", scaling_target=self.scalable_target,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.seconds(b.scale_out_cooldown_s),
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM)
        wake.add_adjustment(adjustment=1, lower_bound=0)
        self.wake_alarm = cw.Alarm(
            self, "HasBacklogWithoutCapacity",
            alarm_description=f"{self.endpoint_name}: requests waiting with no instance; "
                              "scales out from zero",
            metric=self.metric("HasBacklogWithoutCapacity", statistic="Average"),
            threshold=1, evaluation_periods=WAKE_ALARM_EVALUATION_PERIODS,
            datapoints_to_alarm=WAKE_ALARM_EVALUATION_PERIODS,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.wake_alarm.add_alarm_action(cw_actions.ApplicationScalingAction(wake))


# The image's build context is the repository; only what the Dockerfile copies goes in, so the
# image (and its hash) changes only when these change. .dockerignore semantics.
_DOCKER_EXCLUDE = [
    "*", "!constraints.txt", "!sagemaker/Dockerfile", "!sagemaker/serve.py", "!twolane",
    "**/__pycache__", "**/*.pyc",
]


ONNX_PROVIDERS = {"gpu": "CUDAExecutionProvider,CPUExecutionProvider",
                  "cpu": "CPUExecutionProvider"}


def image_build_args(batch: BatchConfig) -> dict[str, str]:
    """Build args of sagemaker/Dockerfile: the onnxruntime build for the instance, pinned to
    the version in constraints.txt (the one the tests ran)."""
    return {"ACCELERATOR": batch.accelerator, "ORT_VERSION": pinned_version("onnxruntime")}


def pinned_version(package: str, constraints: Path = REPO_ROOT / "constraints.txt") -> str:
    for line in constraints.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip().lower().replace("_", "-") == package:
            return version.split(";")[0].strip()
    raise ConfigError(f"{package} is not pinned in {constraints}")


def _object_arn(stack: Stack, s3_url: str) -> str:
    """arn:aws:s3:::bucket/key for an s3:// URL (tokens allowed)."""
    rest = s3_url.removeprefix("s3://")
    return f"arn:{stack.partition}:s3:::{rest}"
