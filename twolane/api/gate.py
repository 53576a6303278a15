"""What every request passes before any route sees it: the API key, a bound on concurrent work,
and a strict JSON reader.

* `Gate` (pure ASGI middleware): a fault anywhere is answered as a JSON 500 and logged by
  type and traceback only (`errors.log_fault`), never re-raised to the server, whose log line
  would hold the exception's message. With API keys set, every path but `OPEN_PATHS` /
  `OPEN_PREFIXES` (the docs included) answers 401 unless `x-api-key` holds a key, before the body is read; a POST then
  waits for one of `max_concurrent` slots before its body is read, so a burst of large requests
  queues in the kernel's socket buffers instead of the process's memory, and `/health` never
  waits behind one. Holding a slot, the whole body must arrive within `body_seconds`
  (TWOLANE_REQUEST_READ_SECONDS, default 10 s) or the answer is 408 and the connection is
  closed: a client that sends half a body and goes quiet holds a slot that long at most, never
  for as long as its socket stays open. (The deadline on reading the headers is the server's:
  `local_stack.server`.)
* `StrictRoute` (FastAPI's custom route class): the body is read by
  `twolane.contract.strict_json_loads`, which rejects NaN / Infinity and numbers or nesting
  Python cannot hold as a 422 (json_invalid), so such values never reach a model or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twolane.api.errors import log_fault, problem
from twolane.contract import strict_json_loads

# Answered without a key: the liveness probe, and GET / (pxtextmining's hello, or the web page
# for a browser, which asks for the key before it calls the API) with the page's static files.
OPEN_PATHS: frozenset[str] = frozenset({"/health", "/"})
OPEN_PREFIXES: tuple[str, ...] = ("/page/",)
KEY_HEADER = b"x-api-key"
# pxtextmining's slow API (/api/StartContainerInstance, /api/GetResults/{id}) takes the key as
# ?code=, as the Azure Function behind it did.
CODE_PREFIX, CODE_PARAM = "/api/", "code"
# The slow API's results URL carries, instead of the key, a results token: it unlocks GET of
# that one job's results and reveals nothing of the key (see `results_token`).
RESULTS_PREFIX, TOKEN_PREFIX = "/api/GetResults/", "r1-"
BODY_SECONDS = 10.0  # a POST's body must arrive whole within this, once it holds a slot


def _given_key(scope: Scope) -> str:
    """The key the request carries: the x-api-key header, or ?code= on the slow API's paths."""
    given = next((v for k, v in scope["headers"] if k == KEY_HEADER), b"").decode("latin-1")
    if not given and scope["path"].startswith(CODE_PREFIX):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get(CODE_PARAM) or [""])[0]
    return given


def key_matches(given: str, keys: frozenset[str]) -> bool:
    """True when `given` is one of `keys` (constant time per key)."""
    return any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)


def results_token(key: str, job_id: str) -> str:
    """The `code` of a slow-API results URL for `job_id` when the job was started with `key`:
    "r1-" + HMAC-SHA256 of the job id, keyed by the key's SHA-256 hex digest (what the AWS
    authorizer stores), 67 characters. It opens GET /api/GetResults/<job_id> only and cannot be
    turned back into the key. Twin: `functions/api/authorizer/handler.py` (stdlib-only asset);
    tests/functional/test_api.py checks that both give the same token."""
    secret = hashlib.sha256(key.encode("utf-8")).hexdigest().encode()
    return TOKEN_PREFIX + hmac.new(secret, job_id.encode("utf-8"), hashlib.sha256).hexdigest()


def key_of(given: str, path: str, keys: frozenset[str]) -> str | None:
    """The key `given` stands for: itself when it is one of `keys`; the key a results token was
    made with, when `given` is one and `path` is that job's GET /api/GetResults/<id>; else None."""
    if key_matches(given, keys):
        return given
    if given.startswith(TOKEN_PREFIX) and path.startswith(RESULTS_PREFIX):
        job_id = path[len(RESULTS_PREFIX):]
        return next((k for k in keys
                     if hmac.compare_digest(given.encode(), results_token(k, job_id).encode())), None)
    return None


class Gate:
    """API-key check and a bound on concurrent POSTs, ahead of routing and body parsing."""

    def __init__(self, app: ASGIApp, keys: frozenset[str], max_concurrent: int,
                 body_seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.keys = keys
        self.slots = asyncio.Semaphore(max_concurrent)
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._gate(scope, receive, tracked)
        except Exception as exc:  # answered and logged here, so the server never logs its message
            rid = log_fault(f"{scope['method']} {scope['path']}", exc)
            if not started:
                await problem(500, "internal server error", request_id=rid)(scope, receive, send)

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.keys:
            given = _given_key(scope)
            if not given or (key_of(given, path, self.keys) is None):
                reason = "invalid API key" if given else "missing x-api-key header"
                await problem(401, reason)(scope, receive, send)
                return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        async with self.slots:
            body = await read_body(receive, self.body_seconds)
            if body is None:
                await problem(408, f"the request body did not arrive within {self.body_seconds:g} "
                                   "s; send it whole, then wait for the answer",
                              headers={"connection": "close"})(scope, receive, send)
                return
            await self.app(scope, replay(body, receive), send)


async def read_body(receive: Receive, seconds: float) -> list[Message] | None:
    """Every message of the request's body, or None when it is not whole within `seconds`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    messages: list[Message] = []
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(end - loop.time(), 0))
        except TimeoutError:
            return None
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` again, then the connection's own (its disconnect)."""
    pending = list(messages)

    async def again() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return again


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictRoute(APIRoute):
    """An APIRoute whose body is read with `strict_json_loads`. Every router uses it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
