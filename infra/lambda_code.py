"""The Lambda code assets, built by the CDK itself: `cdk synth` / `cdk deploy` bundle them.

Two assets, one builder (`infra.build_lambda_asset`, by lane): "instant" (the API, drop-folder
and notification Lambdas) and, with batch.host "lambda", "batch" (the batch worker).
Local bundling (no Docker): `LocalBundling.try_bundle` runs `infra.build_lambda_asset.build_full`
into the folder the CDK hands it: pip installs the lane's dependencies as manylinux cp312
wheels (`--platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12 --target`),
then copies twolane/, the handlers and the lane's bundle. The Docker image and command are the
CDK's required fallback, used only where local bundling is turned off
(TWOLANE_LAMBDA_BUNDLING=docker).

The asset hash is ours (`build_lambda_asset.fingerprint`): code, dependency pins, builder,
platform and bundle. While none of them changes, the CDK reuses the staged asset in cdk.out/
and skips the pip run, and `cdk deploy` uploads nothing new.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerVolume, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.build_lambda_asset import (
    BUNDLE_DIR,
    PLATFORMS,
    REPO_ROOT,
    Lane,
    build_full,
    fingerprint,
    requirements,
    write_marker,
)

BUNDLING_ENV = "TWOLANE_LAMBDA_BUNDLING"  # "docker": skip local bundling (needs Docker)


@jsii.implements(ILocalBundling)
class LocalBundling:
    """Builds the asset on this machine with pip; no Docker."""

    def __init__(self, architecture: str, bundle_dir: Path | None,
                 lane: Lane = "instant") -> None:
        self.architecture = architecture
        self.bundle_dir = bundle_dir
        self.lane = lane

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        if os.environ.get(BUNDLING_ENV, "").lower() == "docker":
            return False
        if self.bundle_dir is None:
            raise RuntimeError(f"the {self.lane} Lambda asset needs the {self.lane} bundle")
        start = time.perf_counter()
        print(f"twolane: building the {self.lane} Lambda asset ({self.architecture}, bundle "
              f"{self.bundle_dir.name}) with pip, no Docker ...", file=sys.stderr, flush=True)
        try:
            info = build_full(Path(output_dir), self.architecture, self.bundle_dir,
                              lane=self.lane)
        except subprocess.CalledProcessError as err:
            raise RuntimeError(
                f"pip could not install the Lambda's dependencies (exit {err.returncode}, "
                "output above); it needs the package index (PyPI or your mirror)") from None
        info = write_marker(Path(output_dir), info, start)
        print(f"twolane: {self.lane} Lambda asset built in {info['build_seconds']} s, "
              f"{info['size_bytes'] / 2**20:.1f} MiB unzipped", file=sys.stderr, flush=True)
        return True


def docker_command(lane: Lane = "instant") -> list[str]:
    """The fallback: the same build inside the CDK's Python 3.12 build image (the repository
    is mounted at /asset-input, the instant bundle at /bundle). Not used unless local bundling
    is turned off (untested here: no Docker); it skips the local build's pruning (and, for the
    batch lane, the size check and leaving out the GPU-only model)."""
    reqs = " ".join(shlex.quote(r) for r in requirements(lane))
    script = " && ".join([
        "pip install -q --no-cache-dir -c /asset-input/constraints.txt --target /asset-output "
        + reqs,
        "cp -r /asset-input/twolane /asset-output/twolane",
        "mkdir -p /asset-output/functions",
        "cp -r /asset-input/functions/. /asset-output/functions/",
        f"cp -r /bundle /asset-output/{BUNDLE_DIR}",
    ])
    return ["bash", "-c", script]


def lambda_code(architecture: str, bundle_dir: Path | None,
                lane: Lane = "instant") -> lambda_.Code:
    """A lane's code asset, bundled by the CDK at synth with the lane's bundle `bundle_dir`
    inside: "instant", shared by the API, drop-folder and notification Lambdas; "batch", the
    batch worker's. `bundle_dir` None: for CLI commands that bundle nothing (destroy, ls); the
    CDK then never calls the bundler."""
    if architecture not in PLATFORMS:
        raise ValueError(f"unknown architecture {architecture!r}")
    platform = "linux/arm64" if architecture == "arm64" else "linux/amd64"
    volumes = [] if bundle_dir is None else [
        DockerVolume(host_path=str(bundle_dir), container_path="/bundle")]
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        asset_hash=fingerprint(architecture, bundle_dir, lane) if bundle_dir
        else f"not-built-{lane}",
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_12.bundling_image,
            command=docker_command(lane),
            volumes=volumes,
            platform=platform,
            local=LocalBundling(architecture, bundle_dir, lane),
        ),
    )
