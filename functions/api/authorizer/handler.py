"""API Gateway (HTTP API) Lambda authorizer: API keys checked against hashes in SSM.

The SSM parameter (name in TWOLANE_API_KEY_PARAMETER) holds a JSON object
`{"<client name>": "<sha256 hex of the key>", ...}`; see `python -m infra.api_keys`.
Only hashes are stored, so reading the parameter never reveals a key. The parameter is read
once per cold start and again after CACHE_SECONDS; API Gateway also caches each answer per key.
Standard library + boto3 (in the Lambda runtime) only: this folder is the whole asset.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)
CACHE_SECONDS = 300.0
HEADER = "x-api-key"
QUERY = "code"  # pxtextmining's slow API passes the key as ?code=
# A slow-API results URL carries a results token as ?code= instead of the key: it opens
# GET .../api/GetResults/<id> of that one job (twin of twolane.api.gate.results_token).
RESULTS_PATH, TOKEN_PREFIX = "/api/GetResults/", "r1-"

_cache: tuple[float, dict[str, str]] | None = None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _read_parameter() -> dict[str, str]:
    import boto3

    name = os.environ["TWOLANE_API_KEY_PARAMETER"]
    try:
        value = boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:  # missing parameter or no access: deny everything, say why
        LOG.error("cannot read API key parameter %s: %s", name, exc)
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        LOG.error("API key parameter %s is not JSON", name)
        return {}
    return {str(k): str(v).lower() for k, v in data.items()} if isinstance(data, dict) else {}


def known_hashes(read: Callable[[], dict[str, str]] = _read_parameter,
                 now: Callable[[], float] = time.monotonic) -> dict[str, str]:
    global _cache
    if _cache is None or now() - _cache[0] > CACHE_SECONDS:
        _cache = (now(), read())
    return _cache[1]


def results_token(known_hash: str, job_id: str) -> str:
    """The results token of `job_id` for the key whose SHA-256 hex is `known_hash`: "r1-" +
    HMAC-SHA256(key=known_hash, msg=job_id), hex (twolane.api.gate.results_token's twin)."""
    mac = hmac.new(known_hash.encode(), job_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + mac


def authorize(headers: dict[str, str] | None, hashes: dict[str, str],
              query: dict[str, str] | None = None, path: str = "",
              method: str = "GET") -> dict[str, Any]:
    """The simple-response answer for one request: the key from the x-api-key header, else
    from the `code` query parameter; on GET .../api/GetResults/<id>, `code` may be that job's
    results token instead (the client named is the one whose key started the job)."""
    key = {k.lower(): v for k, v in (headers or {}).items()}.get(HEADER, "") or \
        (query or {}).get(QUERY, "")
    if key:
        digest = key_hash(key)
        for client, known in hashes.items():
            if hmac.compare_digest(digest, known):
                return {"isAuthorized": True, "context": {"client": client}}
    if key.startswith(TOKEN_PREFIX) and method == "GET" and RESULTS_PATH in path:
        job_id = path.split(RESULTS_PATH, 1)[1]
        for client, known in hashes.items():
            if job_id and hmac.compare_digest(key, results_token(known, job_id)):
                return {"isAuthorized": True, "context": {"client": client}}
    return {"isAuthorized": False, "context": {}}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = (event.get("requestContext") or {}).get("http") or {}
    result = authorize(event.get("headers"), known_hashes(), event.get("queryStringParameters"),
                       path=str(event.get("rawPath") or http.get("path") or ""),
                       method=str(http.get("method") or "GET"))
    LOG.info(json.dumps({"authorized": result["isAuthorized"],
                         "client": result["context"].get("client"),
                         "route": event.get("routeKey")}))
    return result
