"""CDK construct for the job-completion Lambda: functions/notifications/'s handler on the batch lane's SNS
success and error topics (the async endpoint's, or the batch worker Lambda's with its on-failure
destination records: `infra/batch_lane/topics.py`). It moves job records forward (pending -> succeeded|failed) and
deletes the job input once predictions exist.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from infra.common import Shared, acknowledge, failure_queue, logical_id, python_function
from infra.storage import BATCH_FAILURES, BATCH_INPUT, JOBS, Storage


class JobNotifications(Construct):
    def __init__(self, scope: Construct, id: str, *, shared: Shared, code: lambda_.Code,
                 storage: Storage, topics: list[sns.ITopic],
                 environment: Mapping[str, str]) -> None:
        super().__init__(scope, id)
        self.failures = failure_queue(self, "FailedNotifications", shared)
        self.function = python_function(
            self, "Function", shared=shared, code=code,
            handler="functions.notifications.handler.handler",
            description="twolane batch jobs: apply SageMaker async success/error notifications",
            memory_mb=256, timeout_s=60, environment=environment,
        )
        self.function.configure_async_invoke(
            retry_attempts=2, max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.failures))
        for topic in topics:
            topic.add_subscription(subs.LambdaSubscription(self.function))
        # Exactly what twolane.jobs.notifications calls: compare-and-swap on jobs/<id>.json,
        # read the error body SageMaker wrote under batch/failures/, delete the job's input.
        bucket = storage.bucket
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[storage.object_arn(JOBS)]))
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[storage.object_arn(BATCH_FAILURES)]))
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:DeleteObject"], resources=[storage.object_arn(BATCH_INPUT)]))
        # A missing key must answer 404 (not 403) to GetObject.
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{JOBS}*", "batch/*"]}}))
        for prefix, what in ((JOBS, "Job records are named by job id (jobs/<id>.json)"),
                             (BATCH_INPUT, "Job inputs are named by job id"),
                             (BATCH_FAILURES, "Error bodies are named by SageMaker")):
            acknowledge(self, f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{prefix}*]",
                        f"{what}, unknown in advance; the grant is scoped to the prefix.")
