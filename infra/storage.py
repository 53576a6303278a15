"""Storage: the data bucket (drop folder, batch jobs, model data) and its access-log bucket.

Key layout: twolane.layout (the one place it is named): inbox/ outbox/ failed/ (drop folder),
jobs/<id>.json (job records), batch/input|output|failures/ (the async endpoint).

The batch model.tar.gz is not here: `cdk deploy` uploads it as an asset to the CDK bootstrap
bucket (infra/batch_lane/model.py), or batch.model_data_url names one elsewhere.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.common import Shared, acknowledge
from twolane.layout import (  # noqa: F401  (the layout, named once; constructs import it here)
    BATCH_FAILURES,
    BATCH_INPUT,
    BATCH_OUTPUT,
    FAILED,
    INBOX,
    JOBS,
    OUTBOX,
)


class Storage(Construct):
    def __init__(self, scope: Construct, id: str, *, shared: Shared) -> None:
        super().__init__(scope, id)
        st = shared.cfg.storage

        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs",
                                              expiration=Duration.days(st.access_log_expiry_days))],
            removal_policy=shared.removal,
        )
        acknowledge(self.access_logs, "AwsSolutions-S1",
                    "This is the server-access-log bucket; logging it into itself would loop.")

        def expire(rule_id: str, prefix: str, days: int) -> s3.LifecycleRule:
            return s3.LifecycleRule(id=rule_id, prefix=prefix, expiration=Duration.days(days),
                                    abort_incomplete_multipart_upload_after=Duration.days(1))

        self.bucket = s3.Bucket(
            self, "Data",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,  # inputs and results are transient by design
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                expire("expire-inbox", INBOX, st.inbox_expiry_days),
                expire("expire-outbox", OUTBOX, st.outbox_expiry_days),
                expire("expire-failed", FAILED, st.failed_expiry_days),
                expire("expire-batch-input", BATCH_INPUT, st.job_input_expiry_days),
                expire("expire-batch-output", BATCH_OUTPUT, st.job_result_expiry_days),
                expire("expire-batch-failures", BATCH_FAILURES, st.job_result_expiry_days),
                expire("expire-job-records", JOBS, st.job_record_expiry_days),
            ],
            removal_policy=shared.removal,
        )

    def object_arn(self, prefix: str) -> str:
        """ARN of every object under `prefix` (e.g. 'inbox/')."""
        return self.bucket.arn_for_objects(f"{prefix}*")


def removal_policy(retain: bool) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
