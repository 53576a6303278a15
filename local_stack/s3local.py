"""The local S3 (and SQS, SNS): moto's server, behind a guard of ours, on 127.0.0.1 only.

moto on its own is an open door: it takes any credentials, answers any browser origin with
permissive CORS, serves `/moto-api/` (reset, dump) to anyone, and keeps everything in memory.
Here, in front of moto's WSGI app in the same process:

* **Credentials checked**: moto's own IAM signature check is switched on for every request
  (`INITIAL_NO_AUTH_ACTION_COUNT = 0`), with one user, allowed everything, whose keys are made
  once per state folder and kept in `<state_dir>/local-s3/credentials` (an AWS shared
  credentials file, mode 0600, profile `twolane-local`). A request not signed with them gets
  403 with S3's XML error (an unsigned one before moto sees it; anything moto raises is an
  S3-shaped 500 InternalError, its type logged, never a traceback); comment text in job
  inputs is unreadable without them.
* **No CORS, no browser**: a request with an `Origin` header, and every `OPTIONS`, gets 403; no
  `Access-Control-*` header is ever sent (moto's global CORS is turned off).
* **No odd keys**: a key with a `.` or `..` segment, a NUL or a backslash gets 400 before moto
  sees it, so no key can name a place outside the drop folder when it is mirrored locally.
* **`/moto-api/` refused** (403).
* **Persistent**: every object written or deleted through the server is mirrored, before the
  answer goes back, to `<state_dir>/local-s3/<bucket>/<sha256 of key>.{data,json}` (written to
  a temporary name, fsync'd, renamed), and restored into moto at the next start. Jobs, their
  inputs and results, and the drop folder's objects survive a stop (SIGTERM, SIGKILL, power
  loss). Queues and topics (SQS, SNS) are not kept: the jobs they were carrying are started
  again from their records (`local_stack.stack`).
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

from local_stack.files import write_atomic

log = logging.getLogger("twolane.local")

ACCOUNT = "123456789012"  # moto's default account
PROFILE = "twolane-local"
USER = "twolane-local"
ADMIN = json.dumps({"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
_BAD_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def credentials_for(state_dir: Path) -> tuple[Credentials, Path]:
    """The local S3's keys for this state folder (made the first time) and the file holding them."""
    folder = state_dir / "local-s3"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "credentials"
    cfg = configparser.ConfigParser()
    if path.is_file():
        cfg.read(path)
        if cfg.has_section(PROFILE):
            sec = cfg[PROFILE]
            return Credentials(sec["aws_access_key_id"], sec["aws_secret_access_key"]), path
    creds = Credentials("LKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    cfg[PROFILE] = {"aws_access_key_id": creds.access_key_id,
                    "aws_secret_access_key": creds.secret_access_key}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        cfg.write(f)
    return creds, path


def bad_key(key: str) -> bool:
    """True for a key no local folder may hold: a '.' or '..' segment, a NUL, a backslash."""
    return bool(_BAD_SEGMENT.search(key)) or "\x00" in key or "\\" in key


class Mirror:
    """Objects on disk, one pair of files per key; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()

    def _paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        h = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        folder = self.root / hashlib.sha256(bucket.encode()).hexdigest()[:16]
        return folder / f"{h}.data", folder / f"{h}.json"

    def buckets(self) -> Iterator[tuple[str, Path]]:
        for meta in self.root.glob("*/bucket.json"):
            yield json.loads(meta.read_text())["bucket"], meta.parent

    def add_bucket(self, bucket: str, region: str) -> None:
        folder = self._paths(bucket, "")[0].parent
        write_atomic(folder / "bucket.json", json.dumps({"bucket": bucket, "region": region}).encode())

    def save(self, bucket: str, key: str, value: bytes | None, metadata: dict[str, str]) -> None:
        data, meta = self._paths(bucket, key)
        if value is None:
            for p in (meta, data):  # the record first: a stop in between leaves no half
                p.unlink(missing_ok=True)
            return
        write_atomic(data, value)
        write_atomic(meta, json.dumps({"key": key, "metadata": metadata}).encode())

    def objects(self, folder: Path) -> Iterator[tuple[str, bytes, dict[str, str]]]:
        for meta in folder.glob("*.json"):
            if meta.name == "bucket.json":
                continue
            data = meta.with_suffix(".data")
            if data.is_file():
                m = json.loads(meta.read_text())
                yield m["key"], data.read_bytes(), m["metadata"]




def _s3() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def _refuse(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()
    start_response(status, [("Content-Type", "application/xml"),
                            ("Content-Length", str(len(body)))])
    return [body]


_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/\s,]+/\d{8}/[^/\s,]+/[^/\s,]+/aws4_request,"
                    r"\s*SignedHeaders=[^,\s]+,\s*Signature=[0-9a-f]{64}$")
_SIGV2 = re.compile(r"^AWS [^:\s]+:\S+$")


def _signed(environ: dict[str, Any], query: str) -> bool:
    """True when the request carries a well-formed signature (an Authorization header of
    SigV4's or SigV2's shape, or a presigned URL's X-Amz-Signature / Signature); whether it is
    right is moto's IAM check (403 when not). A malformed header would make moto raise."""
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth:
        return bool(_SIGV4.match(auth) or _SIGV2.match(auth))
    params = {p.partition("=")[0].lower() for p in query.split("&") if p}
    return bool(params & {"x-amz-signature", "signature"})


class Guard:
    """WSGI middleware in front of moto's app: the checks and the mirror of the module docstring."""

    def __init__(self, app: Callable[..., Iterable[bytes]], mirror: Mirror) -> None:
        self.app = app
        self.mirror = mirror

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        path, _, query = raw.partition("?")
        if environ.get("HTTP_ORIGIN") is not None or method == "OPTIONS":
            return _refuse(start_response, "403 Forbidden", "AccessDenied",
                           "browsers are not served here")
        if path.startswith("/moto-api"):
            return _refuse(start_response, "403 Forbidden", "AccessDenied", "not served here")
        bucket, _, key = unquote(path).lstrip("/").partition("/")
        if key and bad_key(key):
            return _refuse(start_response, "400 Bad Request", "InvalidKey",
                           "a key may not hold a '.' or '..' segment, a NUL or a backslash")
        if not _signed(environ, query):  # moto would answer 500 with a traceback
            return _refuse(start_response, "403 Forbidden", "AccessDenied",
                           "the request is not signed, or its signature is malformed; sign it "
                           "with the local S3's credentials")
        body = b""
        if method == "POST" and "delete" in query.split("&"):  # DeleteObjects: read its keys
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def recording(st: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(st)
            headers = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(st, headers, exc_info)

        try:
            result = self.app(environ, recording)
            if method in ("PUT", "POST", "DELETE") and bucket:
                chunks = list(result)  # moto has answered: the change is made; mirror it first
                if status and status[0][:1] == "2":
                    self._mirror(method, bucket, key, query, body)
                return chunks
            return result
        except Exception as exc:  # an S3-shaped 500, never a traceback (the type is logged)
            log.error("local S3: %s on a %s request", type(exc).__name__, method)
            if status:  # moto started an answer: it cannot be replaced any more
                raise
            return _refuse(start_response, "500 Internal Server Error", "InternalError",
                           "We encountered an internal error. Please try again.")

    def _mirror(self, method: str, bucket: str, key: str, query: str, body: bytes) -> None:
        params = {p.partition("=")[0] for p in query.split("&") if p}
        if not key:
            if method == "PUT" and not params:
                self.mirror.add_bucket(bucket, _s3().get_bucket(bucket).region_name)
            elif method == "POST" and "delete" in params:
                root = ElementTree.fromstring(body)
                keys = [e.text or "" for e in root.iter() if e.tag.endswith("Key")]
                for k in keys:
                    self._sync(bucket, k)
            return
        if params & {"tagging", "acl", "retention", "legal-hold", "partNumber", "uploads"}:
            return  # not the object's bytes, or a part of an upload not complete yet
        self._sync(bucket, key)

    def _sync(self, bucket: str, key: str) -> None:
        """Write moto's current state of one key to disk (under one lock: the newest wins)."""
        with self.mirror.lock:
            try:
                obj = _s3().get_object(bucket, key)
            except Exception:  # noqa: BLE001 - moto raises for a missing bucket
                obj = None
            if obj is None:
                self.mirror.save(bucket, key, None, {})
            else:
                self.mirror.save(bucket, key, obj.value, {k: str(v) for k, v in obj.metadata.items()})


def _restore(mirror: Mirror) -> int:
    """Put every mirrored bucket and object back into moto; the number of objects."""
    s3 = _s3()
    n = 0
    for bucket, folder in mirror.buckets():
        region = json.loads((folder / "bucket.json").read_text())["region"]
        try:
            s3.get_bucket(bucket)
        except Exception:  # noqa: BLE001 - not there yet
            s3.create_bucket(bucket, region)
        for key, value, metadata in mirror.objects(folder):
            obj = s3.put_object(bucket, key, value, disable_notification=True)
            obj.set_metadata(dict(metadata))
            n += 1
    return n


def _enable_auth(creds: Credentials) -> None:
    """One IAM user with these keys, allowed everything; every request must be signed by it."""
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT]["aws"]
    if USER not in iam.users:
        iam.create_user("us-east-1", USER)
        iam.put_user_policy(USER, "everything", ADMIN)
    user = iam.get_user(USER)
    for k in list(user.access_keys):
        if k.access_key_id != creds.access_key_id:
            iam.access_keys.pop(k.physical_resource_id, None)
            user.access_keys.remove(k)
    if not user.access_keys:
        key = iam.create_access_key(USER)
        iam.access_keys.pop(key.physical_resource_id, None)
        key.access_key_id = creds.access_key_id
        key.secret_access_key = creds.secret_access_key
        iam.access_keys[key.physical_resource_id] = key
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


class LocalS3:
    """moto behind the `Guard`, on 127.0.0.1:`port` (0: any free port), state under `state_dir`."""

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.state_dir = state_dir
        self.port = port
        self.credentials, self.credentials_file = credentials_for(state_dir)
        self.mirror = Mirror(state_dir / "local-s3" / "objects")
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalS3:
        from moto.moto_server import werkzeug_app
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        werkzeug_app.DISABLE_GLOBAL_CORS = True
        restored = _restore(self.mirror)
        if restored:
            log.info("local S3: %d objects restored", restored)
        _enable_auth(self.credentials)
        app = Guard(DomainDispatcherApplication(create_backend_app), self.mirror)
        self._server = make_server("127.0.0.1", self.port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-s3",
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self, timeout_s: float = 1.0) -> bool:
        """True while the server thread runs and its port takes a connection."""
        import socket

        if self._thread is None or not self._thread.is_alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> None:
    """`python -m local_stack.s3local STATE_DIR [PORT]`: the local S3 alone, until killed."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    server = LocalS3(Path(args[0]), int(args[1]) if len(args) > 1 else 0).start()
    print(f"local S3 on {server.endpoint}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
