"""Monitoring: one dashboard, alarms on errors, on batch backlog age and on drift (comments
unlike the training data, twolane.drift), an SNS alarm topic.

Every Lambda in `functions` gets an errors and a throttles alarm. The batch lane's alarms follow
its host: the async endpoint's backlog age and invocation failures, or for the batch worker
Lambda (batch.host "lambda") the age of the oldest shard waiting in its async queue
(AsyncEventAge, same threshold), shards dropped from that queue, and runs near the timeout."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.batch_lane import AsyncEndpoint
from infra.common import Shared
from twolane import drift

FIVE_MIN = Duration.minutes(5)
NEAR_TIMEOUT = 0.8  # batch worker: a shard running this share of the timeout raises an alarm
DRIFT_PERIOD = Duration.hours(1)  # drift alarm: any drifted file or job within the hour


def drift_metric(name: str, statistic: str, period: Duration = DRIFT_PERIOD) -> cw.Metric:
    """A drift metric the drop folder and jobs publish per file / job (twolane.drift, EMF)."""
    return cw.Metric(namespace=drift.METRIC_NAMESPACE, metric_name=name, statistic=statistic,
                     period=period, dimensions_map={"service": drift.METRIC_SERVICE})


class Monitoring(Construct):
    def __init__(self, scope: Construct, id: str, *, shared: Shared, http_api: apigw.HttpApi,
                 functions: dict[str, lambda_.Function], queues: dict[str, sqs.Queue],
                 endpoint: AsyncEndpoint | None,
                 worker: lambda_.Function | None = None) -> None:
        super().__init__(scope, id)
        cfg = shared.cfg
        self.topic = sns.Topic(self, "Alarms", master_key=shared.key, enforce_ssl=True,
                               display_name=f"twolane {cfg.env} alarms")
        # CloudWatch must be allowed to use the key to publish to the encrypted topic.
        shared.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
        if cfg.monitoring.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(cfg.monitoring.alarm_email))
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []

        def alarm(name: str, metric: cw.IMetric, threshold: float, what: str,
                  periods: int = 1) -> cw.Alarm:
            a = cw.Alarm(self, name, metric=metric, threshold=threshold,
                         evaluation_periods=periods, datapoints_to_alarm=periods,
                         alarm_description=f"twolane {cfg.env}: {what}",
                         comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                         treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            a.add_alarm_action(action)
            self.alarms.append(a)
            return a

        for name, fn in functions.items():
            alarm(f"{name}Errors", fn.metric_errors(period=FIVE_MIN, statistic="Sum"),
                  cfg.monitoring.lambda_error_alarm_threshold, f"{name} Lambda errors")
            alarm(f"{name}Throttles", fn.metric_throttles(period=FIVE_MIN, statistic="Sum"), 1,
                  f"{name} Lambda throttled")
        alarm("Api5xx", http_api.metric_server_error(period=FIVE_MIN, statistic="Sum"), 5,
              "HTTP API 5xx responses")
        for name, q in queues.items():
            alarm(f"{name}Waiting", q.metric_approximate_number_of_messages_visible(
                period=FIVE_MIN, statistic="Maximum"), 1,
                f"{name}: failed events are waiting in the dead-letter queue")

        # Comments unlike the training data (twolane.drift): 1 per drifted file or job
        self.drift_alarm = alarm(
            "CommentsDrifted", drift_metric(drift.DRIFTED_METRIC, "Sum"), 1,
            "a file or job of comments looks unlike the instant model's training data "
            "(twolane drift FILE --bundle DIR says which signals)")
        drift_widgets: list[cw.IWidget] = [
            cw.GraphWidget(title="Drift: files and jobs unlike the training data", width=12,
                           left=[drift_metric(drift.DRIFTED_METRIC, "Sum")]),
            cw.GraphWidget(title="Drift: PSI per signal (max; >= 0.1 with a small p is drift)",
                           width=12, left=[drift_metric(m, "Maximum", Duration.minutes(5))
                                           for m in drift.METRIC_NAMES.values()]),
        ]
        api_widgets: list[cw.IWidget] = [
            cw.GraphWidget(title="API latency (ms)", width=12, left=[
                http_api.metric_latency(period=Duration.minutes(1), statistic=s, label=s)
                for s in ("p50", "p95", "p99")]),
            cw.GraphWidget(title="API requests and errors", width=12, left=[
                http_api.metric_count(period=Duration.minutes(1), statistic="Sum"),
                http_api.metric_client_error(period=Duration.minutes(1), statistic="Sum"),
                http_api.metric_server_error(period=Duration.minutes(1), statistic="Sum")]),
            cw.GraphWidget(title="Lambda errors", width=12, left=[
                fn.metric_errors(period=Duration.minutes(1), statistic="Sum", label=name)
                for name, fn in functions.items()]),
            cw.GraphWidget(title="Lambda duration p95 (ms)", width=12, left=[
                fn.metric_duration(period=Duration.minutes(1), statistic="p95", label=name)
                for name, fn in functions.items()]),
        ]
        batch_widgets: list[cw.IWidget] = []
        if endpoint is not None:
            b = endpoint.batch
            self.backlog_age = alarm(
                "BatchBacklogAge",
                endpoint.metric("ApproximateAgeOfOldestRequest", statistic="Maximum",
                                period_s=300),
                b.backlog_age_alarm_s, f"oldest batch request older than {b.backlog_age_alarm_s} s")
            alarm("BatchInvocationFailures",
                  endpoint.metric("InvocationFailures", statistic="Sum", period_s=300,
                                  variant=True), 1, "batch invocations failed")
            batch_widgets = [
                cw.GraphWidget(title="Batch backlog", width=12, left=[
                    endpoint.metric("ApproximateBacklogSize"),
                    endpoint.metric("ApproximateBacklogSizePerInstance")],
                    right=[endpoint.metric("HasBacklogWithoutCapacity", statistic="Maximum")]),
                cw.GraphWidget(title="Batch instances (CPUUtilization samples per minute)",
                               width=12, left=[cw.Metric(
                                   namespace="/aws/sagemaker/Endpoints",
                                   metric_name="CPUUtilization", statistic="SampleCount",
                                   period=Duration.minutes(1), label="instances",
                                   dimensions_map={"EndpointName": endpoint.endpoint_name,
                                                   "VariantName": "AllTraffic"})]),
                cw.GraphWidget(title="Batch oldest request age (s)", width=12, left=[
                    endpoint.metric("ApproximateAgeOfOldestRequest", statistic="Maximum")]),
                cw.GraphWidget(title="Batch invocations", width=12, left=[
                    endpoint.metric("InvocationsProcesssed", statistic="Sum", variant=True),
                    endpoint.metric("InvocationFailures", statistic="Sum", variant=True)]),
            ]
        if worker is not None:
            b = cfg.batch
            self.backlog_age = alarm(
                "BatchBacklogAge",
                worker.metric("AsyncEventAge", statistic="Maximum", period=FIVE_MIN),
                b.backlog_age_alarm_s * 1000,  # AsyncEventAge is in milliseconds
                f"oldest batch shard waiting longer than {b.backlog_age_alarm_s} s")
            alarm("BatchShardsDropped",
                  worker.metric("AsyncEventsDropped", statistic="Sum", period=FIVE_MIN), 1,
                  "batch shards dropped unprocessed (their jobs fail)")
            near = int(b.lambda_timeout_s * 1000 * NEAR_TIMEOUT)
            alarm("BatchWorkerNearTimeout",
                  worker.metric_duration(period=FIVE_MIN, statistic="Maximum"), near,
                  f"a batch shard ran over {NEAR_TIMEOUT:.0%} of the worker's "
                  f"{b.lambda_timeout_s} s timeout (lower batch.shard_size or add memory)")
            batch_widgets = [
                cw.GraphWidget(title="Batch worker: shard duration (ms)", width=12, left=[
                    worker.metric_duration(period=Duration.minutes(1), statistic=s, label=s)
                    for s in ("p50", "Maximum")]),
                cw.GraphWidget(title="Batch worker: shards queued, oldest waiting (ms)",
                               width=12,
                               left=[worker.metric("AsyncEventsReceived", statistic="Sum",
                                                   period=Duration.minutes(1))],
                               right=[worker.metric("AsyncEventAge", statistic="Maximum",
                                                    period=Duration.minutes(1))]),
                cw.GraphWidget(title="Batch worker: shards", width=12, left=[
                    worker.metric_invocations(period=Duration.minutes(1), statistic="Sum"),
                    worker.metric_errors(period=Duration.minutes(1), statistic="Sum"),
                    worker.metric("AsyncEventsDropped", statistic="Sum",
                                  period=Duration.minutes(1))]),
            ]
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"twolane-{cfg.env}",
                                      default_interval=Duration.hours(6))
        widgets = api_widgets + batch_widgets + drift_widgets + [cw.AlarmStatusWidget(
            title="Alarms", width=24, alarms=self.alarms)]
        for i in range(0, len(widgets), 2):
            self.dashboard.add_widgets(*widgets[i:i + 2])
