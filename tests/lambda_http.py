"""A requests transport adapter that hands each request to a Lambda handler as an API Gateway
HTTP API (payload 2.0) event, so a client flow written against `requests` runs unchanged
against the Lambda function (Mangum -> FastAPI) in a test."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class LambdaContext:
    function_name = "twolane-api"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:twolane-api"
    aws_request_id = "3f1e6a3c-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_api_event(method: str, url: str, headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
    """The event API Gateway sends for one request (header names lower-cased, as it does)."""
    u = urlsplit(url)
    h = {k.lower(): v for k, v in headers.items()}
    h.setdefault("host", u.netloc)
    h.update({"x-forwarded-proto": u.scheme, "x-forwarded-port": "443",
              "x-forwarded-for": "203.0.113.7"})
    if body:
        h["content-length"] = str(len(body))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": u.path or "/",
        "rawQueryString": u.query,
        "headers": h,
        "requestContext": {
            "accountId": "123456789012", "apiId": u.netloc.split(".")[0],
            "domainName": u.netloc, "domainPrefix": u.netloc.split(".")[0],
            "http": {"method": method, "path": u.path or "/", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": h.get("user-agent", "")},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": "$default",
            "time": "10/Mar/2025:12:00:00 +0000", "timeEpoch": 1741608000000,
        },
        "isBase64Encoded": bool(body),
    }
    if u.query:
        event["queryStringParameters"] = dict(p.split("=", 1) if "=" in p else (p, "")
                                              for p in u.query.split("&"))
    if body:
        event["body"] = base64.b64encode(body).decode()
    return event


class LambdaAdapter(BaseAdapter):
    def __init__(self, handler: Any) -> None:
        super().__init__()
        self.handler = handler

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        out = self.handler(http_api_event(request.method or "GET", request.url or "/",
                                          dict(request.headers), body), LambdaContext())
        resp = requests.Response()
        resp.status_code = out["statusCode"]
        resp.headers = CaseInsensitiveDict(out.get("headers") or {})
        raw = out.get("body") or ""
        resp._content = base64.b64decode(raw) if out.get("isBase64Encoded") else raw.encode("utf-8")
        resp.url = request.url
        resp.request = request
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


def lambda_session(handler: Any) -> requests.Session:
    """A requests session whose every https:// (and http://) request goes to `handler`."""
    s = requests.Session()
    s.mount("https://", LambdaAdapter(handler))
    s.mount("http://", LambdaAdapter(handler))
    return s
