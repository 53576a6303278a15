"""`TwolaneStack`: one stack per environment, one construct per concern.

One stack, not several: the drop-folder notification ties the bucket to a Lambda and that
Lambda's policy back to the bucket, and the batch lane's topics tie it to the notification
Lambda; split across stacks these references form cycles or force exports that block later
changes. The parts share one lifecycle (`cdk deploy` of one env), so one stack of units
(Storage, InstantApi, DropFolder, AsyncEndpoint or BatchWorker, JobNotifications, Monitoring)
keeps the boundaries in code without cross-stack plumbing.

The batch lane runs where `batch.host` says: "async_endpoint" (a SageMaker async endpoint,
infra/batch_lane/) or "lambda" (the batch worker Lambda, functions/batch_worker/, invoked once
per shard). Either makes the lane's two completion topics (`BatchTopics`), read by the same
notification Lambda; the jobs API and the drop folder get the invoker and the one grant that
host needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.batch_lane import AsyncEndpoint
from infra.batch_lane.topics import BatchTopics
from infra.build_lambda_asset import BUNDLE_DIR, ENCODER_DIR
from infra.common import Shared, acknowledge, logical_id
from infra.config import ConfigError, DeployConfig
from infra.lambdas.api import InstantApi
from infra.lambdas.batch_worker import BatchWorker
from infra.lambdas.dropfolder import DropFolder
from infra.lambdas.notifications import JobNotifications
from infra.llm_lane import LlmEndpoint, llm_endpoint_name
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


@dataclass(frozen=True)
class Artifacts:
    """What the stack ships, found (and checked) before the CDK starts.

    lambda_asset: a prebuilt Lambda asset folder (tests, benchmarks); None = the CDK bundles one
    with `instant_bundle` inside (both None: a CLI command that bundles nothing, e.g. destroy).
    model_artifact: the batch model.tar.gz to upload as an asset; None when
    batch.model_data_url names one in S3, the batch lane is off or runs on Lambda.
    batch_asset / batch_bundle: the same pair for the batch worker's asset (batch.host
    "lambda"), with the batch bundle inside."""

    instant_bundle: Path | None = None
    lambda_asset: Path | None = None
    model_artifact: Path | None = None
    batch_bundle: Path | None = None
    batch_asset: Path | None = None
    llm_artifact: Path | None = None  # the LLM's model.tar.gz (llm.enabled, no model_data_url)


def batch_manifest_bytes(artifacts: Artifacts) -> bytes | None:
    """The batch bundle's manifest.json, from the batch bundle folder or the model.tar.gz the
    stack ships; None when neither is here."""
    import tarfile

    raw: bytes | None = None
    if artifacts.batch_bundle is not None and (artifacts.batch_bundle / "manifest.json").is_file():
        raw = (artifacts.batch_bundle / "manifest.json").read_bytes()
    elif artifacts.model_artifact is not None and artifacts.model_artifact.is_file():
        with tarfile.open(artifacts.model_artifact) as tar:
            member = next((m for m in tar.getmembers()
                           if m.name.lstrip("./") == "manifest.json"), None)
            f = tar.extractfile(member) if member is not None else None
            raw = f.read() if f is not None else None
    return raw


def batch_taxonomy_json(artifacts: Artifacts) -> str | None:
    """The batch bundle's taxonomy (what the batch lane answers in) as JSON, or None when no
    batch bundle is here. The API reads it as TWOLANE_BATCH_TAXONOMY: jobs for an instant model
    of another taxonomy are refused (twolane.bundle.Manifest.batch_lane_refuses)."""
    import json

    raw = batch_manifest_bytes(artifacts)
    taxonomy = json.loads(raw).get("taxonomy") if raw is not None else None
    return json.dumps(taxonomy, separators=(",", ":")) if isinstance(taxonomy, dict) else None


def cascade_rule_json(artifacts: Artifacts) -> str | None:
    """The cascade rule (`ensemble.cascade` of the batch bundle's manifest, its validation curve
    left out) as JSON, from the batch bundle folder or the model.tar.gz the stack ships; None
    when neither is here or the bundle has no rule. The API reads it as TWOLANE_CASCADE_RULE
    (`"lane": "auto"` jobs), since its own asset holds only the instant bundle."""
    import json

    raw = batch_manifest_bytes(artifacts)
    if raw is None:
        return None
    cascade = (json.loads(raw).get("ensemble") or {}).get("cascade")
    if not isinstance(cascade, dict):
        return None
    return json.dumps({k: v for k, v in cascade.items() if k != "curve"}, separators=(",", ":"))


def batch_bundle_environment(artifacts: Artifacts) -> dict[str, str]:
    """What the API reads of the batch bundle it does not hold: TWOLANE_CASCADE_RULE
    (`"lane": "auto"` jobs) and TWOLANE_BATCH_TAXONOMY (jobs for an instant model of another
    taxonomy are refused); each only when the bundle has it."""
    found = {"TWOLANE_CASCADE_RULE": cascade_rule_json(artifacts),
             "TWOLANE_BATCH_TAXONOMY": batch_taxonomy_json(artifacts)}
    return {k: v for k, v in found.items() if v is not None}


def batch_endpoint_name(cfg: DeployConfig) -> str:
    """The instance type is part of the name: SageMaker refuses to change the instance type of
    an auto-scaled variant in place, so a new type deploys a new endpoint (and scalable target)
    and CloudFormation deletes the old one after the switch."""
    size = cfg.batch.instance_type.removeprefix("ml.").replace(".", "-")
    return f"twolane-{cfg.env}-batch-{size}"[:63]


class TwolaneStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: DeployConfig, artifacts: Artifacts,
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
        code = self._code(cfg, artifacts)
        endpoint_name = batch_endpoint_name(cfg)

        # The batch lane's host first: the invokers' environment names it.
        if cfg.batch.enabled and cfg.batch.host not in ("async_endpoint", "lambda"):
            raise ConfigError(
                f"batch.host is {cfg.batch.host!r} (chosen by `twolane recommend`), but this "
                "stack builds the batch lane only as 'async_endpoint' or 'lambda' so far: set "
                "batch.host to one of them or batch.enabled to false")
        topics: BatchTopics | None = None
        batch: AsyncEndpoint | None = None
        worker: BatchWorker | None = None
        if cfg.batch.enabled and cfg.batch.host == "lambda":
            worker = BatchWorker(self, "BatchWorker", shared=shared,
                                 code=self._batch_code(cfg, artifacts), storage=storage,
                                 bundle_path=f"{LAMBDA_TASK_ROOT}/{BUNDLE_DIR}")
            topics = worker.topics
        elif cfg.batch.enabled:
            batch = AsyncEndpoint(self, "BatchLane", shared=shared, storage=storage,
                                  endpoint_name=endpoint_name, batch=cfg.batch,
                                  model_artifact=artifacts.model_artifact)
            topics = batch.topics
        llm: LlmEndpoint | None = None
        if cfg.llm.enabled:  # the LLM lane: its own async endpoint (infra/llm_lane/)
            llm = LlmEndpoint(self, "LlmLane", shared=shared, storage=storage,
                              endpoint_name=llm_endpoint_name(cfg),
                              model_artifact=artifacts.llm_artifact)

        env = self._environment(cfg, bucket.bucket_name, endpoint_name, worker, llm)
        if cfg.batch.enabled:  # the API has no batch bundle of its own
            env.update(batch_bundle_environment(artifacts))

        api = InstantApi(self, "InstantApi", shared=shared, code=code, environment=env)
        drop = DropFolder(self, "DropFolder", shared=shared, code=code, storage=storage,
                          environment=env)
        functions = {"Api": api.function, "Authorizer": api.authorizer_function,
                     "DropFolder": drop.function}
        queues = {"DropFolderFailures": drop.failures}

        if topics is not None:
            notes = JobNotifications(self, "JobNotifications", shared=shared, code=code,
                                     storage=storage, environment=env, topics=topics.topics)
            functions["JobNotifications"] = notes.function
            queues["JobNotificationFailures"] = notes.failures
            invoke = self._invoke_statement(batch, worker)
            self._grant_jobs_api(api, storage, invoke)
            self._grant_batch_inbox(drop, notes, storage, invoke)
            if llm is not None:
                self._grant_summaries(api, storage, llm)
                self._subscribe_llm(notes, llm)
        elif llm is not None:
            raise ConfigError("llm.enabled needs batch.enabled (summary jobs use the batch "
                              "lane's job store and notifications)")
        if llm is not None:
            CfnOutput(self, "LlmEndpointName", value=llm.endpoint.endpoint.attr_endpoint_name)
        if batch is not None:
            CfnOutput(self, "BatchEndpointName", value=batch.endpoint.attr_endpoint_name)
        if worker is not None:
            functions["BatchWorker"] = worker.function
            CfnOutput(self, "BatchWorkerName", value=worker.function.function_name)

        monitoring = Monitoring(self, "Monitoring", shared=shared, http_api=api.http_api,
                                functions=functions, queues=queues, endpoint=batch,
                                worker=worker.function if worker is not None else None)

        self._acknowledge_cdk_internals()

        CfnOutput(self, "ApiUrl", value=api.url)
        CfnOutput(self, "ApiKeyParameter", value=api.parameter_name)
        CfnOutput(self, "BucketName", value=bucket.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"twolane-{cfg.env}")
        CfnOutput(self, "FailedEventQueues", value=",".join(q.queue_name for q in queues.values()))

    def _environment(self, cfg: DeployConfig, bucket_name: str, endpoint_name: str,
                     worker: BatchWorker | None, llm: LlmEndpoint | None) -> dict[str, str]:
        """The runtime's TWOLANE_* environment, shared by the API, drop folder and notifications."""
        env = {
            "TWOLANE_BUCKET": bucket_name,
            "TWOLANE_AWS_REGION": self.region,
            "TWOLANE_INSTANT_BUNDLE": f"{LAMBDA_TASK_ROOT}/{BUNDLE_DIR}",
            "TWOLANE_SENTENCE_ENCODER": f"{LAMBDA_TASK_ROOT}/{ENCODER_DIR}",
            "TWOLANE_BATCH_ENABLED": "1" if cfg.batch.enabled else "0",
        }
        if worker is not None:  # jobs go to the worker Lambda, one async invocation per shard
            env |= {"TWOLANE_BATCH_INVOKER": "lambda",
                    "TWOLANE_BATCH_FUNCTION": worker.function.function_name}
        else:
            env |= {"TWOLANE_BATCH_INVOKER": "sagemaker",
                    "TWOLANE_BATCH_ENDPOINT": endpoint_name,
                    "TWOLANE_BATCH_MAX_CONCURRENCY": str(
                        cfg.batch.max_concurrent_invocations_per_instance),
                    "TWOLANE_BATCH_INVOCATION_TIMEOUT_S": str(cfg.batch.invocation_timeout_s)}
        env |= {
            "TWOLANE_BATCH_SHARD_SIZE": str(cfg.batch.shard_size),
            "TWOLANE_SUMMARIES_ENABLED": "1" if llm is not None else "0",
            "POWERTOOLS_METRICS_NAMESPACE": "twolane",
        }
        if llm is not None:
            env |= self._llm_env(cfg)
        return env

    @staticmethod
    def _code(cfg: DeployConfig, artifacts: Artifacts) -> lambda_.Code:
        """The shared Lambda code: bundled by the CDK (pip, no Docker), or a prebuilt folder."""
        if artifacts.lambda_asset is not None:
            return lambda_.Code.from_asset(str(artifacts.lambda_asset))
        from infra.lambda_code import lambda_code

        return lambda_code(cfg.instant.architecture, artifacts.instant_bundle)

    @staticmethod
    def _batch_code(cfg: DeployConfig, artifacts: Artifacts) -> lambda_.Code:
        """The batch worker's own asset (batch model inside): bundled by the CDK (pip, no
        Docker), or a prebuilt folder."""
        if artifacts.batch_asset is not None:
            return lambda_.Code.from_asset(str(artifacts.batch_asset))
        from infra.lambda_code import lambda_code

        return lambda_code(cfg.batch.lambda_architecture, artifacts.batch_bundle, lane="batch")

    @staticmethod
    def _invoke_statement(endpoint: AsyncEndpoint | None,
                          worker: BatchWorker | None) -> iam.PolicyStatement:
        """The one call that starts a job's invocations on the host: InvokeEndpointAsync on the
        endpoint, or InvokeFunction on the worker Lambda (the function itself, unqualified)."""
        if worker is not None:
            return iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                       resources=[worker.function.function_arn])
        assert endpoint is not None
        return iam.PolicyStatement(actions=["sagemaker:InvokeEndpointAsync"],
                                   resources=[endpoint.endpoint_arn])

    def _grant_jobs_api(self, api: InstantApi, storage: Storage,
                        invoke: iam.PolicyStatement) -> None:
        """The API Lambda also runs the batch jobs API (POST/GET /v1/jobs). Exactly what
        twolane.jobs (store + invoker) calls there:
          batch/input/      PutObject (the request), DeleteObject (once results exist)
          jobs/             GetObject + PutObject (the record; conditional writes)
          batch/output/     GetObject (HeadObject: done yet? then the results), DeleteObject
          batch/failures/   GetObject (the error), DeleteObject
          the host          sagemaker:InvokeEndpointAsync on the endpoint, or
                            lambda:InvokeFunction on the batch worker (`invoke`)"""
        fn = api.function
        fn.add_to_role_policy(invoke.copy())
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[storage.object_arn(BATCH_INPUT)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[storage.object_arn(JOBS)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"],
            resources=[storage.object_arn(BATCH_OUTPUT), storage.object_arn(BATCH_FAILURES)]))
        # A missing key must answer 404 (not 403) to GetObject/HeadObject.
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[storage.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{JOBS}*", "batch/*"]}}))
        logical = logical_id(storage.bucket)
        for p in (BATCH_INPUT, JOBS, BATCH_OUTPUT, BATCH_FAILURES):
            acknowledge(api, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"The jobs API reads/writes job objects under {p}, named by job id.")

    @staticmethod
    def _llm_env(cfg: DeployConfig) -> dict[str, str]:
        """What the jobs API needs to send summary jobs to the LLM endpoint."""
        from twolane.summaries.plan import llm_name

        name = cfg.llm.model_name or llm_name(cfg.llm.model_path)
        return {"TWOLANE_SUMMARY_ENDPOINT": llm_endpoint_name(cfg),
                "TWOLANE_GENERATION_MODEL": name}

    def _subscribe_llm(self, notes: JobNotifications, llm: LlmEndpoint) -> None:
        """The notifications Lambda hears the LLM endpoint's success and error topics too (the
        same handler completes a summary job's shards as a classify job's)."""
        fn = notes.function
        for name, topic in (("Success", llm.topics.success_topic), ("Error", llm.topics.error_topic)):
            sns.Subscription(self, f"LlmNotify{name}", topic=topic, endpoint=fn.function_arn,
                             protocol=sns.SubscriptionProtocol.LAMBDA)
            fn.add_permission(f"LlmNotify{name}", principal=iam.ServicePrincipal("sns.amazonaws.com"),
                              source_arn=topic.topic_arn)

    def _grant_summaries(self, api: InstantApi, storage: Storage, llm: LlmEndpoint) -> None:
        """Summary jobs, on top of the jobs API's grants: InvokeEndpointAsync on the LLM
        endpoint, and GetObject on batch/input/ (the job's plan, read back at collection to
        ground the quotes)."""
        fn = api.function
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpointAsync"], resources=[llm.endpoint.endpoint_arn]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.object_arn(BATCH_INPUT)]))

    def _grant_batch_inbox(self, drop: DropFolder, notes: JobNotifications, storage: Storage,
                           invoke: iam.PolicyStatement) -> None:
        """inbox/batch/ files: the drop folder submits them as jobs (`invoke`: the host's one
        call); the notifications function writes their results to outbox/ (or a report to
        failed/) when the job ends."""
        fn = drop.function
        fn.add_to_role_policy(invoke.copy())
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.object_arn(BATCH_INPUT)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[storage.object_arn(JOBS)]))
        notes.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[storage.object_arn(OUTBOX), storage.object_arn(FAILED)]))
        # Delivering then hands the job out (twolane.dropfolder.delivery): read the results
        # (each shard's), then delete them and any error body, as a GET would.
        notes.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"], resources=[storage.object_arn(BATCH_OUTPUT)]))
        notes.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:DeleteObject"], resources=[storage.object_arn(BATCH_FAILURES)]))
        logical = logical_id(storage.bucket)
        for p in (BATCH_INPUT, JOBS):
            acknowledge(drop, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"Batch-inbox files become jobs: objects under {p}, named by job id.")
        for p in (OUTBOX, FAILED):
            acknowledge(notes, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{p}*]",
                        f"Batch-inbox results and reports go under {p} with the dropped file's name.")
        acknowledge(notes, f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{BATCH_OUTPUT}*]",
                    f"Batch-inbox results are read and deleted under {BATCH_OUTPUT}, named per "
                    "invocation by the batch host.")

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
