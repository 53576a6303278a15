"""CDK construct for the S3 drop folder: functions/dropfolder/'s handler on `inbox/` object-created events.

S3 invokes the Lambda asynchronously; failed events are retried, then kept in an SQS queue
(on-failure destination) for ops to inspect and replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from infra.common import Shared, acknowledge, failure_queue, logical_id, python_function
from infra.storage import FAILED, INBOX, OUTBOX, Storage


class DropFolder(Construct):
    def __init__(self, scope: Construct, id: str, *, shared: Shared, code: lambda_.Code,
                 storage: Storage, environment: Mapping[str, str]) -> None:
        super().__init__(scope, id)
        inst = shared.cfg.instant
        self.failures = failure_queue(self, "FailedEvents", shared)
        self.function = python_function(
            self, "Function", shared=shared, code=code,
            handler="functions.dropfolder.handler.handler",
            description="twolane drop folder: inbox/ -> outbox/ or failed/",
            memory_mb=inst.dropfolder_memory_mb, timeout_s=inst.dropfolder_timeout_s,
            environment=environment,
        )
        self.function.configure_async_invoke(
            retry_attempts=inst.dropfolder_retry_attempts,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.failures),
        )
        # Exactly what twolane.dropfolder.process calls (tests/functional/test_iam_enforced.py runs it
        # against these policies with IAM enforced):
        #   inbox/   HeadObject + GetObject (read), CopyObject source (read), DeleteObject
        #   outbox/  PutObject (results); HeadObject on a repeated event (is the result there?)
        #   failed/  CopyObject target + PutObject (report); HeadObject on a repeated event
        # HeadObject is authorised as s3:GetObject.
        bucket = storage.bucket
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:DeleteObject"], resources=[storage.object_arn(INBOX)]))
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[storage.object_arn(OUTBOX), storage.object_arn(FAILED)]))
        # HeadObject on a missing key answers 403 without ListBucket; the handler needs 404.
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{INBOX}*", f"{OUTBOX}*", f"{FAILED}*"]}}))
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.function),
            s3.NotificationKeyFilter(prefix=INBOX))
        for prefix, what in ((INBOX, "reads and deletes any file a user drops under inbox/"),
                             (OUTBOX, "writes results (and checks for them) under outbox/"),
                             (FAILED, "writes rejected files and reports under failed/")):
            acknowledge(self, f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{prefix}*]",
                        f"The drop folder {what}, named after the dropped file; names are not "
                        "known in advance, so the grant is scoped to the prefix.")
