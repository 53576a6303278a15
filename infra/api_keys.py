"""API keys for the HTTP API: make one, and store only its SHA-256 in SSM.

    .venv/bin/python -m infra.api_keys new --env prod --client nhs-trust-a          # print key + hash
    .venv/bin/python -m infra.api_keys new --env prod --client nhs-trust-a --apply  # also store it
    .venv/bin/python -m infra.api_keys revoke --env prod --client nhs-trust-a --apply
    .venv/bin/python -m infra.api_keys list --env prod

The parameter `/twolane/<env>/api-key-hashes` holds `{"<client>": "<sha256 hex>", ...}`; the
authorizer (functions/api/authorizer/handler.py) reads it. --apply uses your AWS credentials (boto3).
The key itself is printed once and never stored: hand it to the client, then forget it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import sys
from typing import Any

CLIENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parameter_name(env: str) -> str:
    return f"/twolane/{env}/api-key-hashes"


def new_key() -> str:
    return "tl_" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _ssm(region: str | None) -> Any:
    import boto3

    return boto3.client("ssm", region_name=region)


def read_hashes(ssm: Any, name: str) -> dict[str, str]:
    try:
        return json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return {}


def write_hashes(ssm: Any, name: str, hashes: dict[str, str]) -> None:
    ssm.put_parameter(Name=name, Type="String", Overwrite=True, Tier="Standard",
                      Value=json.dumps(hashes, indent=0, sort_keys=True),
                      Description="twolane API key hashes (sha256); see infra/api_keys.py")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.api_keys", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["new", "revoke", "list"])
    p.add_argument("--env", required=True, choices=["dev", "prod"])
    p.add_argument("--client", help="who the key is for (letters, digits, . _ -)")
    p.add_argument("--region", default=None)
    p.add_argument("--apply", action="store_true", help="write the SSM parameter")
    a = p.parse_args(argv)
    name = parameter_name(a.env)
    if a.action in ("new", "revoke") and not (a.client and CLIENT.match(a.client)):
        p.error("--client is required: 1-64 letters, digits, '.', '_' or '-'")
    if a.action == "list":
        print(json.dumps(sorted(read_hashes(_ssm(a.region), name)), indent=2))
        return 0
    if a.action == "new":
        key = new_key()
        print(f"client:  {a.client}\napi key: {key}\nsha256:  {key_hash(key)}")
        if a.apply:
            ssm = _ssm(a.region)
            hashes = read_hashes(ssm, name)
            hashes[a.client] = key_hash(key)
            write_hashes(ssm, name, hashes)
            print(f"stored in {name} (takes effect within 5 minutes)")
        else:
            print(f"not stored; add \"{a.client}\": \"<sha256>\" to SSM parameter {name}")
        return 0
    ssm = _ssm(a.region)
    hashes = read_hashes(ssm, name)
    if hashes.pop(a.client, None) is None:
        print(f"no key for {a.client} in {name}", file=sys.stderr)
        return 1
    if a.apply:
        write_hashes(ssm, name, hashes)
        print(f"revoked {a.client} (cached answers expire within 5 minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
