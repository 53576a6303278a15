"""CDK construct for the batch worker (batch.host "lambda"): functions/batch_worker/'s handler runs the
transformer on one shard of a batch job per asynchronous invocation ("Lambda fan-out": the API
and the drop folder invoke it once per shard, so a job's shards run in parallel).

It reads the shard's input under batch/input/, writes results under batch/output/ or an error
body under batch/failures/, and publishes the outcome to the batch success or error topic, as
SageMaker does for the async endpoint (its own pair of `BatchTopics`); the job-notification
Lambda takes it from there.
Lambda does not retry a failed invocation (a shard runs once, as on the endpoint); a failed or
expired one goes to the error topic as Lambda's on-failure destination record.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.batch_lane.topics import BatchTopics
from infra.common import Shared, acknowledge, logical_id, python_function
from infra.storage import BATCH_FAILURES, BATCH_INPUT, BATCH_OUTPUT, Storage

# How long Lambda keeps an invocation that waits for capacity (reserved concurrency, throttling)
# before it gives up and sends it to the error topic: the most Lambda allows (6 h), so a job in
# many shards is slowed by a concurrency cap, never failed by it; the batch backlog-age alarm
# (infra/monitoring.py) says when shards wait longer than batch.backlog_age_alarm_s.
MAX_EVENT_AGE_S = 6 * 3600


class BatchWorker(Construct):
    """The worker function, its environment, its grants and its async invoke config.

    `bundle_path`: where the batch bundle lies in the asset (TWOLANE_BATCH_BUNDLE)."""

    def __init__(self, scope: Construct, id: str, *, shared: Shared, code: lambda_.Code,
                 storage: Storage, bundle_path: str) -> None:
        super().__init__(scope, id)
        b = shared.cfg.batch
        bucket = storage.bucket
        self.topics = topics = BatchTopics.create(self, shared, f"twolane-{shared.cfg.env} "
                                                  "batch worker")
        arch = lambda_.Architecture.ARM_64 if b.lambda_architecture == "arm64" \
            else lambda_.Architecture.X86_64
        self.function = python_function(
            self, "Function", shared=shared, code=code,
            handler="functions.batch_worker.handler.handler",
            description="twolane batch worker: the transformer on one shard of a job",
            memory_mb=b.lambda_memory_mb, timeout_s=b.lambda_timeout_s,
            reserved_concurrency=b.lambda_reserved_concurrency, arch=arch,
            environment={
                "TWOLANE_BUCKET": bucket.bucket_name,
                "TWOLANE_AWS_REGION": Stack.of(self).region,
                "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": topics.success_topic.topic_arn,
                "TWOLANE_BATCH_ERROR_TOPIC_ARN": topics.error_topic.topic_arn,
                "TWOLANE_BATCH_BUNDLE": bundle_path,
            },
        )
        # No retry; on failure (an error, a timeout, or MAX_EVENT_AGE_S waiting) Lambda sends
        # its destination record to the error topic, so the job fails instead of waiting. L1:
        # the L2 SnsDestination would also grant kms:GenerateDataKey* (the grants below are
        # exact, and Lambda sends destination records with this role).
        self.invoke_config = lambda_.CfnEventInvokeConfig(
            self, "AsyncInvoke", function_name=self.function.function_name,
            qualifier="$LATEST", maximum_retry_attempts=0,
            maximum_event_age_in_seconds=MAX_EVENT_AGE_S,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(
                    destination=topics.error_topic.topic_arn)))
        # Exactly what the worker calls (tests/functional/test_iam_enforced.py checks these with IAM
        # enforced): the shard's input, its results or error body, the outcome message.
        fn = self.function
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.object_arn(BATCH_INPUT)]))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"],
            resources=[storage.object_arn(BATCH_OUTPUT), storage.object_arn(BATCH_FAILURES)]))
        # A missing input (a job whose inputs were deleted when another shard failed) must
        # answer 404, not 403, to GetObject: the worker reports it as "not found", not as a
        # fault of its own.
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{BATCH_INPUT}*"]}}))
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["sns:Publish"],
            resources=[topics.success_topic.topic_arn, topics.error_topic.topic_arn]))
        # The topics are encrypted with the stack's key: publishing needs a data key.
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[shared.key.key_arn]))
        policy = fn.role.node.try_find_child("DefaultPolicy") if fn.role else None
        if policy is not None:  # the destination is checked against the role at creation
            self.invoke_config.node.add_dependency(policy)
        for prefix, what in ((BATCH_INPUT, "reads the shard inputs the jobs API writes"),
                             (BATCH_OUTPUT, "writes results"),
                             (BATCH_FAILURES, "writes error bodies")):
            acknowledge(self, f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{prefix}*]",
                        f"The batch worker {what} under {prefix}, named by job and shard; "
                        "names are not known in advance, so the grant is scoped to the prefix.")
