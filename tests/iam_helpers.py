"""Helpers for tests/functional/test_iam_enforced.py: turn the synthesised template's role policies into
plain IAM policies for a test account, and make moto enforce them the way AWS would.

moto evaluates identity policies when a request arrives after INITIAL_NO_AUTH_ACTION_COUNT
requests (server mode: POST /moto-api/reset-auth). Two things it does not do like AWS, which
`enforce_like_aws` adds for the calls the handlers make:
- non-S3 actions are checked against Resource "*": InvokeEndpointAsync, GetParameter,
  lambda:InvokeFunction and sns:Publish are checked here against the endpoint's, the
  parameter's, the function's and the topic's ARN, as AWS does;
- CopyObject is checked as PutObject on the target only: AWS also needs GetObject on the source;
- Lambda's Invoke is checked as the action "lambda:Invoke": AWS's IAM action is
  lambda:InvokeFunction.
Its server cannot verify sagemaker-runtime signatures (it rewrites their Host header first), so
for that one service the keys choose the user without the signature check.
And its InvokeEndpointAsync answers with a made-up bucket: here it answers with the output and
failure paths of the synthesised endpoint config, as SageMaker does. Its Lambda Invoke runs the
function in Docker: here an invocation (after the IAM check) is only recorded, as the batch
worker's invokers need no more (Lambda queues an InvocationType=Event call and answers 202).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-2"
PARTITION = "aws"


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def refs_for(template: dict[str, Any], names: dict[str, str]) -> dict[str, dict[str, str]]:
    """What `Ref` and `Fn::GetAtt ... Arn` give for each resource in the test account.
    `names`: logical id -> physical name (the buckets)."""
    out: dict[str, dict[str, str]] = {}
    for lid, res in template["Resources"].items():
        name = names.get(lid, lid.lower())
        arn = {
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
        }.get(res["Type"], f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:{name}")
        ref = arn if res["Type"] == "AWS::SNS::Topic" else name
        out[lid] = {"Ref": ref, "Arn": arn}
    return out


PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
          "AWS::URLSuffix": "amazonaws.com"}


def resolve(value: Any, refs: dict[str, dict[str, str]]) -> Any:
    """Evaluate the intrinsic functions a CDK policy or environment uses."""
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return PSEUDO[name] if name in PSEUDO else refs[name]["Ref"]
    if set(value) == {"Fn::GetAtt"}:
        lid, attr = value["Fn::GetAtt"]
        return refs[lid][attr]
    if set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(str(resolve(p, refs)) for p in parts)
    if set(value) == {"Fn::Sub"}:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in PSEUDO:
                return PSEUDO[name]
            lid, _, attr = name.partition(".")
            return refs[lid][attr or "Ref"]
        return re.sub(r"\$\{([^}]+)\}", sub, value["Fn::Sub"])
    return {k: resolve(v, refs) for k, v in value.items()}


def function_of(template: dict[str, Any], handler: str) -> dict[str, Any]:
    found = [r["Properties"] for r in resources(template, "AWS::Lambda::Function").values()
             if r["Properties"].get("Handler") == handler]
    assert len(found) == 1, f"expected one function with handler {handler}"
    return found[0]


def role_policy(template: dict[str, Any], handler: str,
                refs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every statement the stack grants the role of the Lambda running `handler`, resolved:
    the policies attached to the role, its inline policies; managed policies are refused."""
    role = function_of(template, handler)["Role"]["Fn::GetAtt"][0]
    props = template["Resources"][role]["Properties"]
    assert not props.get("ManagedPolicyArns"), "the Lambda roles carry no managed policies"
    statements = [st for pol in props.get("Policies", []) for st in
                  pol["PolicyDocument"]["Statement"]]
    for res in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in res["Properties"]["Roles"]:
            statements += res["Properties"]["PolicyDocument"]["Statement"]
    return {"Version": "2012-10-17", "Statement": resolve(statements, refs)}


def environment(template: dict[str, Any], handler: str,
                refs: dict[str, dict[str, str]]) -> dict[str, str]:
    return resolve(function_of(template, handler)["Environment"]["Variables"], refs)


# -- moto, made to check like AWS --------------------------------------------------------------


@dataclass
class Call:
    user: str
    action: str
    resource: str
    allowed: bool


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    invocations: list[dict[str, str]] = field(default_factory=list)

    def denied(self) -> list[Call]:
        return [c for c in self.calls if not c.allowed]


def _pattern(p: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(x) for x in p.split("*")) + "$")


def unused_grants(policy: dict[str, Any], calls: list[Call], user: str,
                  ignore_actions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(action, resource) pairs the policy allows that no recorded call of `user` used."""
    unused = []
    for st in policy["Statement"]:
        if st["Effect"] != "Allow":
            continue
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for action in actions:
            if action.startswith(ignore_actions):
                continue
            for r in res:
                pat = _pattern(r)
                if not any(c.user == user and c.allowed and c.action == action
                           and pat.match(c.resource) for c in calls):
                    unused.append((action, r))
    return unused


# The resource ARN moto's IAM check is given per request (patched in by enforce_like_aws).
def endpoint_resource(self: Any) -> str:
    name = self.path.split("/")[2]
    return f"arn:{PARTITION}:sagemaker:{self.region}:{self.current_account}:endpoint/" \
           f"{name.lower()}"

def parameter_resource(self: Any) -> str:
    name = str(json.loads(self.body or "{}").get("Name", "")).lstrip("/")
    return f"arn:{PARTITION}:ssm:{self.region}:{self.current_account}:parameter/{name}"

def function_resource(self: Any) -> str:
    if "/functions/" not in self.path:
        return "*"
    name = unquote(self.path.split("/functions/", 1)[1].split("/")[0])
    return name if name.startswith("arn:") else \
        f"arn:{PARTITION}:lambda:{self.region}:{self.current_account}:function:{name}"

def topic_resource(self: Any) -> str:
    return str(self._get_param("TopicArn") or "*")


@contextmanager
def enforce_like_aws(template: dict[str, Any], refs: dict[str, dict[str, str]],
                     recorder: Recorder) -> Iterator[None]:
    import pytest
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse
    from moto.iam.access_control import IAMRequestBase
    from moto.s3.responses import S3Response
    from moto.sagemakerruntime.models import SageMakerRuntimeBackend
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.sns.responses import SNSResponse
    from moto.ssm.responses import SimpleSystemManagerResponse

    config = next(iter(resources(template, "AWS::SageMaker::EndpointConfig").values()))
    out_cfg = resolve(config["Properties"]["AsyncInferenceConfig"]["OutputConfig"], refs)
    check = IAMRequestBase.check_action_permitted
    signature = IAMRequestBase.check_signature
    authorize_s3 = S3Response._authenticate_and_authorize_s3_action
    invoke_response = SageMakerRuntimeResponse.invoke_endpoint_async

    def check_signature(self: Any) -> None:
        # moto's server rewrites the Host header of sagemaker-runtime requests before it
        # recomputes their signature, so it can never match; the keys still pick the user and
        # its policy. Every other service's signature is checked.
        if self._service != "sagemaker":
            signature(self)

    def recording_check(self: Any, resource: str) -> None:
        user = self._access_key.arn.rsplit("/", 1)[-1]
        if self._action == "lambda:Invoke":  # the API's operation name, not the IAM action
            self._action = "lambda:InvokeFunction"
        try:
            check(self, resource)
        except Exception:
            recorder.calls.append(Call(user, self._action, resource, False))
            raise
        recorder.calls.append(Call(user, self._action, resource, True))

    def s3_with_copy_source(self: Any, bucket_name: str | None = None,
                            key_name: str | None = None) -> None:
        authorize_s3(self, bucket_name=bucket_name, key_name=key_name)
        source = self.headers.get("x-amz-copy-source")
        if source and key_name:  # CopyObject: AWS also authorises reading the source
            src_bucket, _, src_key = unquote(source.split("?")[0]).lstrip("/").partition("/")
            action = self.data.get("Action")
            self.data["Action"] = "GetObject"
            try:
                authorize_s3(self, bucket_name=src_bucket, key_name=src_key)
            finally:
                self.data["Action"] = action

    def recording_lambda_invoke(self: Any, function_name: str, qualifier: str | None, body: Any,
                                headers: Any, response_headers: Any) -> bytes:
        recorder.invocations.append({
            "function": function_name, "type": headers.get("X-Amz-Invocation-Type", ""),
            "payload": body.decode() if isinstance(body, bytes) else str(body)})
        return b""

    def invoke_async(self: Any, endpoint_name: str, input_location: str) -> tuple[str, str]:
        name = uuid.uuid4().hex
        return (f"{out_cfg['S3OutputPath']}/{name}.out",
                f"{out_cfg['S3FailurePath']}/{name}-error.out")

    def recording_invoke(self: Any) -> Any:
        recorder.invocations.append({
            "endpoint": self.path.split("/")[2],
            "input": self.headers.get("X-Amzn-SageMaker-InputLocation", ""),
            "timeout": self.headers.get("X-Amzn-SageMaker-InvocationTimeoutSeconds", "")})
        return invoke_response(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(IAMRequestBase, "check_action_permitted", recording_check)
        mp.setattr(IAMRequestBase, "check_signature", check_signature)
        mp.setattr(S3Response, "_authenticate_and_authorize_s3_action", s3_with_copy_source)
        mp.setattr(SageMakerRuntimeResponse, "_determine_resource", endpoint_resource,
                   raising=False)
        mp.setattr(SageMakerRuntimeResponse, "invoke_endpoint_async", recording_invoke)
        mp.setattr(SimpleSystemManagerResponse, "_determine_resource", parameter_resource,
                   raising=False)
        mp.setattr(SageMakerRuntimeBackend, "invoke_endpoint_async", invoke_async)
        mp.setattr(LambdaResponse, "_determine_resource", function_resource, raising=False)
        mp.setattr(LambdaBackend, "invoke", recording_lambda_invoke)
        mp.setattr(SNSResponse, "_determine_resource", topic_resource, raising=False)
        yield


@dataclass
class Aws:
    """A moto server enforcing the template's role policies: one IAM user per handler (its
    Lambda role's policy) plus "admin" (everything)."""

    endpoint: str
    template: dict[str, Any]
    refs: dict[str, dict[str, str]]
    keys: dict[str, tuple[str, str]]  # user -> (access key id, secret)
    policies: dict[str, dict[str, Any]]
    recorder: Recorder

    def client(self, service: str, user: str = "admin") -> Any:
        import boto3

        key, secret = self.keys[user]
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id=key, aws_secret_access_key=secret)


@contextmanager
def enforced_account(template: dict[str, Any], bucket: str,
                     handlers: dict[str, str]) -> Iterator[Aws]:
    """A moto server (tests/batchlane_helpers.moto_server) on which, once this yields, every
    request is authenticated and authorised against the synthesised policies
    (`enforce_like_aws`): the data bucket made as `bucket`, a user per entry of `handlers`
    (name -> the handler whose Lambda role it gets) and "admin"."""
    import boto3
    import requests
    from batchlane_helpers import moto_server

    data = [lid for lid, r in resources(template, "AWS::S3::Bucket").items()
            if "LoggingConfiguration" in r["Properties"]]
    refs = refs_for(template, {data[0]: bucket})
    recorder = Recorder()
    with moto_server() as endpoint, enforce_like_aws(template, refs, recorder):
        root = {"region_name": REGION, "endpoint_url": endpoint}
        boto3.client("s3", **root).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        iam = boto3.client("iam", **root)
        policies = {name: role_policy(template, h, refs) for name, h in handlers.items()}
        everything = {"Version": "2012-10-17",
                      "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        keys = {}
        for user, doc in {"admin": everything, **policies}.items():
            iam.create_user(UserName=user)
            arn = iam.create_policy(PolicyName=f"{user}-policy",
                                    PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        # From here on every request is authenticated and authorised (moto server mode).
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        try:
            yield Aws(endpoint, template, refs, keys, policies, recorder)
        finally:
            requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
