"""Small shared pieces of the CDK app: Lambda defaults and justified cdk-nag acknowledgements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from infra.config import DeployConfig

PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_12

# Every acknowledgement made while building the app, for the bench report:
# (construct path, rule id, reason).
ACKNOWLEDGED: list[tuple[str, str, str]] = []


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on `scope` (and its children), with the reason in code."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a real reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
    ACKNOWLEDGED.append((scope.node.path, rule, reason))


@dataclass(frozen=True)
class Shared:
    """What every unit of the stack may need."""

    cfg: DeployConfig
    key: kms.IKey  # encrypts the SNS topics
    removal: RemovalPolicy


def architecture(cfg: DeployConfig) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if cfg.instant.architecture == "arm64" \
        else lambda_.Architecture.X86_64


def failure_queue(scope: Construct, id: str, shared: Shared) -> sqs.Queue:
    """An encrypted (SQS-managed SSE: no KMS calls for the senders), TLS-only queue that keeps
    failed asynchronous invocations for 14 days."""
    q = sqs.Queue(scope, id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                  retention_period=Duration.days(14), removal_policy=shared.removal)
    acknowledge(q, "AwsSolutions-SQS3",
                "This queue is itself the dead-letter store (Lambda on-failure destination); "
                "a dead-letter queue for it would only move the same messages again.")
    return q


def python_function(scope: Construct, id: str, *, shared: Shared, code: lambda_.Code,  # noqa: PLR0913 (keyword-only construct options)
                    handler: str, description: str, memory_mb: int, timeout_s: int,
                    environment: Mapping[str, str] | None = None,
                    reserved_concurrency: int | None = None,
                    arch: lambda_.Architecture | None = None,
                    snap_start: bool = False) -> lambda_.Function:
    """A Python 3.12 Lambda with its own role (no managed policies), its own log group with a
    retention period (no LogRetention custom resource) and JSON logs. `snap_start`: SnapStart
    on published versions (call a version or alias to use it)."""
    log_group = logs.LogGroup(
        scope, f"{id}Logs",
        retention=retention(shared.cfg.monitoring.log_retention_days),
        removal_policy=RemovalPolicy.DESTROY)
    role = iam.Role(scope, f"{id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=f"{description} (twolane {shared.cfg.env})")
    role.add_to_policy(iam.PolicyStatement(
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn]))
    fn = lambda_.Function(
        scope, id,
        runtime=PYTHON_RUNTIME,
        architecture=arch or architecture(shared.cfg),
        code=code,
        handler=handler,
        description=description,
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_s),
        environment=dict(environment or {}),
        reserved_concurrent_executions=reserved_concurrency,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
    )
    acknowledge(fn, "AwsSolutions-L1",
                "Pinned to Python 3.12 on purpose: the dependency wheels in the asset are built "
                "for cp312 (pip --python-version 3.12), and the runtime must match them.")
    return fn


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention enum for a day count (validated in DeployConfig)."""
    return getattr(logs.RetentionDays, _RETENTION[days])


def region_of(scope: Construct) -> str:
    return Stack.of(scope).region


def logical_id(construct: Construct) -> str:
    """Logical id of a construct's CloudFormation resource, as cdk-nag prints it in finding
    ids such as `AwsSolutions-IAM5[Resource::<StorageData6BB23F4E.Arn>/inbox/*]`."""
    child = construct.node.default_child
    return Stack.of(construct).resolve(child.logical_id)
