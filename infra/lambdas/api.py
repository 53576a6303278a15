"""CDK construct for the instant-lane API: functions/api/'s handler behind an HTTP API.

HTTP API (API Gateway v2) -> Lambda authorizer (API keys, hashed in SSM) -> API Lambda (Mangum).
Throttling is set on the stage; access logs go to CloudWatch Logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Annotations, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.common import Shared, acknowledge, python_function, retention

AUTHORIZER_CODE = Path(__file__).resolve().parents[2] / "functions" / "api" / "authorizer"
API_KEY_HEADER = "x-api-key"
# Served without the authorizer: the web page (twolane/api/routers/page.py) and the health check
# (twolane/api/routers/health.py), GET and HEAD (uptime checks). The app's Gate opens the same.
OPEN_PATHS = ("/", "/page/{proxy+}", "/health")
API_KEY_QUERY = "code"


def api_key_parameter_name(env: str) -> str:
    return f"/twolane/{env}/api-key-hashes"


class InstantApi(Construct):
    """The API Lambda, its authorizer and the HTTP API with throttling and access logs."""

    def __init__(self, scope: Construct, id: str, *, shared: Shared, code: lambda_.Code,
                 environment: Mapping[str, str]) -> None:
        super().__init__(scope, id)
        cfg = shared.cfg
        inst = cfg.instant

        self.function = python_function(
            self, "Function", shared=shared, code=code,
            handler="functions.api.handler.handler",
            description="twolane instant-lane API (FastAPI via Mangum)",
            memory_mb=inst.lambda_memory_mb, timeout_s=inst.timeout_s,
            reserved_concurrency=inst.reserved_concurrency,
            environment={**environment, "TWOLANE_API_KEYS": ""},  # auth is at the gateway
            snap_start=inst.snapstart,
        )
        # What API Gateway calls: the function, or with SnapStart (instant.snapstart) the alias
        # 'live' on its current published version, whose snapshot is taken after the import
        # (the model loaded) and restored instead of a cold start. SnapStart applies only to
        # published versions; a deploy that changes the code or config publishes a new one.
        self.target: lambda_.IFunction = self.function
        if inst.snapstart:
            self.alias = lambda_.Alias(self, "Live", alias_name="live",
                                       version=self.function.current_version)
            self.target = self.alias
            Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "published: the alias 'live' points at current_version, and API Gateway calls it")

        # Authorizer: compares sha256(x-api-key) with the hashes in an SSM parameter that
        # operators own (created outside the stack so a deploy never resets the keys).
        self.parameter_name = api_key_parameter_name(cfg.env)
        param_arn = Stack.of(self).format_arn(
            service="ssm", resource="parameter", resource_name=self.parameter_name.lstrip("/"))
        self.authorizer_function = python_function(
            self, "Authorizer", shared=shared, code=lambda_.Code.from_asset(str(AUTHORIZER_CODE)),
            handler="handler.handler",
            description="twolane API-key authorizer",
            memory_mb=256, timeout_s=5,
            environment={"TWOLANE_API_KEY_PARAMETER": self.parameter_name},
        )
        self.authorizer_function.add_to_role_policy(iam.PolicyStatement(
            actions=["ssm:GetParameter"], resources=[param_arn]))
        authorizer = authorizers.HttpLambdaAuthorizer(
            "ApiKeyAuthorizer", self.authorizer_function,
            identity_source=[f"$request.header.{API_KEY_HEADER}"],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(inst.auth_cache_ttl_s),
        )

        integration = integrations.HttpLambdaIntegration("Api", self.target)
        # pxtextmining's slow API (/api/StartContainerInstance, /api/GetResults/<id>): its
        # clients pass the key as ?code=, so those routes take it from the query string. A
        # results URL's code is a token that opens one job's results: the path is part of the
        # identity, so a cached "yes" for one path never answers for another.
        code_authorizer = authorizers.HttpLambdaAuthorizer(
            "CodeAuthorizer", self.authorizer_function,
            identity_source=[f"$request.querystring.{API_KEY_QUERY}", "$context.path"],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(inst.auth_cache_ttl_s),
        )

        self.http_api = apigw.HttpApi(
            self, "HttpApi",
            api_name=f"twolane-{cfg.env}",
            description="twolane instant lane and batch jobs",
            default_integration=integration,
            default_authorizer=authorizer,
            create_default_stage=False,
        )
        # The web page (GET / and its static files) is open: a browser cannot send x-api-key
        # when it opens a page. It holds no data; it asks for the key before calling the API.
        # /health (model loaded, its version) is open for uptime checks, as the app's Gate has it.
        for path in OPEN_PATHS:
            for route in self.http_api.add_routes(
                    path=path, methods=[apigw.HttpMethod.GET, apigw.HttpMethod.HEAD],
                    integration=integration, authorizer=apigw.HttpNoneAuthorizer()):
                acknowledge(route, "AwsSolutions-APIG4",
                            "the web page's static files and the health check: no data, no "
                            "model call; the API the page calls keeps the API-key authorizer")
        self.http_api.add_routes(
            path="/api/{proxy+}", methods=[apigw.HttpMethod.ANY],
            integration=integrations.HttpLambdaIntegration("SlowApi", self.target),
            authorizer=code_authorizer)
        self.access_logs = logs.LogGroup(self, "AccessLogs",
                                         retention=retention(cfg.monitoring.log_retention_days))
        self.stage = apigw.HttpStage(
            self, "Stage", http_api=self.http_api, stage_name="$default", auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=inst.throttle_rate_limit,
                                            burst_limit=inst.throttle_burst_limit),
        )
        cfn_stage: apigw.CfnStage = self.stage.node.default_child
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn,
            format=json.dumps({
                "requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
                "requestTime": "$context.requestTime", "method": "$context.httpMethod",
                "path": "$context.path", "status": "$context.status",
                "latencyMs": "$context.responseLatency", "length": "$context.responseLength",
                "client": "$context.authorizer.client", "error": "$context.error.message",
                "integrationError": "$context.integrationErrorMessage",
            }),
        )

    @property
    def url(self) -> str:
        return self.http_api.api_endpoint
