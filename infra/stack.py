"""`TwolaneStack`: one stack per environment, one construct per concern.

One stack, not several: the drop-folder notification ties the bucket to a Lambda and that
Lambda's policy back to the bucket, and the async endpoint's topics tie the batch lane to the
notification Lambda; split across stacks these references form cycles or force exports that
block later changes. The parts share one lifecycle (`cdk deploy` of one env), so one stack of
units (Storage, InstantApi, DropFolder, AsyncEndpoint, JobNotifications, Monitoring) keeps the
boundaries in code without cross-stack plumbing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.api.construct import InstantApi
from functions.dropfolder.construct import DropFolder
from functions.notifications.construct import JobNotifications
from infra.batch_lane import AsyncEndpoint
from infra.batch_lane.endpoint import _logical
from infra.common import Shared, acknowledge
from infra.config import ConfigError, DeployConfig
from infra.monitoring import Monitoring
from infra.storage import (
    BATCH_FAILURES,
    BATCH_INPUT,
    BATCH_OUTPUT,
    FAILED,
    JOBS,
    OUTBOX,
    Storage,
    removal_policy,
)

LAMBDA_TASK_ROOT = "/var/task"
BUNDLE_IN_ASSET = "bundle"  # the instant bundle is copied to <asset>/bundle/


def batch_endpoint_name(cfg: DeployConfig) -> str:
    """The instance type is part of the name: SageMaker refuses to change the instance type of
    an auto-scaled variant in place, so a new type deploys a new endpoint (and scalable target)
    and CloudFormation deletes the old one after the switch."""
    size = cfg.batch.instance_type.removeprefix("ml.").replace(".", "-")
    return f"twolane-{cfg.env}-batch-{size}"[:63]


class TwolaneStack(Stack):
    asset_info: dict[str, Any]  # what the Lambda asset holds; set by infra.app for the report

    def __init__(self, scope: Construct, id: str, *, cfg: DeployConfig, asset_dir: Path,
                 **kwargs) -> None:
        super().__init__(scope, id, description=f"twolane text classification ({cfg.env})",
                         **kwargs)
        for k, v in {"project": "twolane", "env": cfg.env, **cfg.tags}.items():
            Tags.of(self).add(k, v)
        removal = removal_policy(cfg.storage.retain_on_delete)
        key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=removal,
                      description=f"twolane {cfg.env}: SNS topics")
        shared = Shared(cfg=cfg, key=key, removal=removal)

        storage = Storage(self, "Storage", shared=shared)
        bucket = storage.bucket
        code = lambda_.Code.from_asset(str(asset_dir))
        endpoint_name = batch_endpoint_name(cfg)
        env = {
            "TWOLANE_BUCKET": bucket.bucket_name,
            "TWOLANE_AWS_REGION": self.region,
            "TWOLANE_INSTANT_BUNDLE": f"{LAMBDA_TASK_ROOT}/{BUNDLE_IN_ASSET}",
            "TWOLANE_BATCH_INVOKER": "sagemaker",
            "TWOLANE_BATCH_ENDPOINT": endpoint_name,
            "TWOLANE_BATCH_MAX_CONCURRENCY": str(cfg.batch.max_concurrent_invocations_per_instance),
            "POWERTOOLS_METRICS_NAMESPACE": "twolane",
        }

        api = InstantApi(self, "InstantApi", shared=shared, code=code, environment=env)
        drop = DropFolder(self, "DropFolder", shared=shared, code=code, storage=storage,
                          environment=env)
        functions = {"Api": api.function, "Authorizer": api.authorizer_function,
                     "DropFolder": drop.function}
        queues = {"DropFolderFailures": drop.failures}

        batch: AsyncEndpoint | None = None
        if cfg.batch.enabled and cfg.batch.host != "async_endpoint":
            raise ConfigError(
                f"batch.host is {cfg.batch.host!r} (chosen by `twolane recommend`), but this "
                "stack builds the batch lane only as an async endpoint so far: set batch.host "
                "to 'async_endpoint' or batch.enabled to false")
        if cfg.batch.enabled:
            batch = AsyncEndpoint(self, "BatchLane", shared=shared, storage=storage,
                                  endpoint_name=endpoint_name, batch=cfg.batch)
            notes = JobNotifications(self, "JobNotifications", shared=shared, code=code,
                                     storage=storage, environment=env,
                                     topics=[batch.success_topic, batch.error_topic])
            functions["JobNotifications"] = notes.function
            queues["JobNotificationFailures"] = notes.failures
            self._grant_jobs_api(api, storage, batch)
            self._grant_batch_inbox(drop, notes, storage, batch)
            acknowledge(notes, f"AwsSolutions-IAM5[Resource::<{_logical(bucket)}.Arn>/jobs/*]",
                        "Job records are named by job id (jobs/<id>.json), unknown in advance.")
            for p in (BATCH_INPUT, BATCH_OUTPUT, BATCH_FAILURES):
                acknowledge(notes, f"AwsSolutions-IAM5[Resource::<{_logical(bucket)}.Arn>/{p}*]",
                            f"Job objects under {p} are named by job id / by SageMaker.")
            CfnOutput(self, "BatchEndpointName", value=batch.endpoint.attr_endpoint_name)

        monitoring = Monitoring(self, "Monitoring", shared=shared, http_api=api.http_api,
                                functions=functions, queues=queues, endpoint=batch)

        acknowledge(drop, f"AwsSolutions-IAM5[Resource::<{_logical(bucket)}.Arn>/inbox/*]",
                    "The drop folder handles any file users drop under inbox/; names are "
                    "unknown in advance, so the grant is scoped to the prefix.")
        for p in ("outbox/", "failed/"):
            acknowledge(drop, f"AwsSolutions-IAM5[Resource::<{_logical(bucket)}.Arn>/{p}*]",
                        f"Results and reports are written under {p} with the dropped file's name.")
        self._acknowledge_cdk_internals()

        CfnOutput(self, "ApiUrl", value=api.url)
        CfnOutput(self, "ApiKeyParameter", value=api.parameter_name)
        CfnOutput(self, "BucketName", value=bucket.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"twolane-{cfg.env}")
        CfnOutput(self, "FailedEventQueues", value=",".join(q.queue_name for q in queues.values()))

    def _grant_jobs_api(self, api: InstantApi, storage: Storage, batch: AsyncEndpoint) -> None:
        """The API Lambda also runs the batch jobs API (POST/GET /v1/jobs)."""
        fn = api.function
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpointAsync"], resources=[batch.endpoint_arn]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            resources=[storage.object_arn(BATCH_INPUT)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[storage.object_arn(JOBS)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"],
            resources=[storage.object_arn(BATCH_OUTPUT), storage.object_arn(BATCH_FAILURES)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[storage.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{JOBS}*", "batch/*"]}}))
        logical = _logical(storage.bucket)
        for p in (BATCH_INPUT, JOBS, BATCH_OUTPUT, BATCH_FAILURES):
            acknowledge(api, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"The jobs API reads/writes job objects under {p}, named by job id.")

    def _grant_batch_inbox(self, drop: DropFolder, notes: JobNotifications, storage: Storage,
                           batch: AsyncEndpoint) -> None:
        """inbox/batch/ files: the drop folder submits them as jobs; the notifications function
        writes their results to outbox/ (or a report to failed/) when the job ends."""
        fn = drop.function
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpointAsync"], resources=[batch.endpoint_arn]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.object_arn(BATCH_INPUT)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[storage.object_arn(JOBS)]))
        notes.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.object_arn(OUTBOX), storage.object_arn(FAILED)]))
        logical = _logical(storage.bucket)
        for p in (BATCH_INPUT, JOBS):
            acknowledge(drop, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"Batch-inbox files become jobs: objects under {p}, named by job id.")
        for p in (OUTBOX, FAILED):
            acknowledge(notes, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"Batch-inbox results and reports go under {p} with the dropped file's name.")

    def _acknowledge_cdk_internals(self) -> None:
        """Findings on resources the CDK itself adds (not our code)."""
        handler = self.node.try_find_child(
            "BucketNotificationsHandler050a0587b7544547bf325f094a3db834")
        if handler is not None:
            acknowledge(handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                                 "service-role/AWSLambdaBasicExecutionRole]",
                        "CDK's own bucket-notification custom resource (runs at deploy only); "
                        "its role is not configurable.")
            acknowledge(handler, "AwsSolutions-IAM5[Resource::*]",
                        "CDK's bucket-notification custom resource must call "
                        "PutBucketNotification; the CDK fixes this policy.")
