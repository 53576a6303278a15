"""Build the instant-lane Lambda asset folder (no Docker): this project's code, its core and
`[serve]` dependencies installed for the Lambda platform, and the instant model bundle.

`cdk synth` / `cdk deploy` run this themselves (CDK local bundling, `infra/lambda_code.py`);
the command line is for measuring or inspecting an asset by hand:

    .venv/bin/python -m infra.build_lambda_asset --env dev --out build/lambda/instant  # needs PyPI
    .venv/bin/python -m infra.build_lambda_asset --code-only --out DIR   # handlers only, offline

Layout of the asset (= /var/task in the Lambda):

    twolane/, functions/, numpy/, onnxruntime/, boto3/, ...   code and dependencies (cp312 wheels)
    bundle/                                                  the instant bundle (TWOLANE_INSTANT_BUNDLE)
    .twolane-asset.json                                      what was built, for whom, how big

The three Python Lambdas (API, drop folder, job notifications) share this one asset.

boto3 and its dependencies (botocore, s3transfer, urllib3, jmespath, python-dateutil, six) are
shipped as one consistent set, pinned by constraints.txt, rather than taken from the runtime.
The job store's compare-and-swap needs S3 conditional writes (PutObject IfMatch/IfNoneMatch),
which only recent botocore releases know, and the SDK inside the Lambda runtime is chosen and
updated by AWS; shipping the set costs ~23 MiB unzipped (17 MiB zipped) and runs exactly the
versions the tests ran. Shipping only part of it (as before) let our urllib3/jmespath shadow the runtime's boto3's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from infra.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".twolane-asset.json"
BUNDLE_DIR = "bundle"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
TARGET_BYTES = 100 * 1024 * 1024
BUILDER_VERSION = "2"  # bump when the asset's layout or pruning changes (part of the asset hash)
# The AWS SDK and everything it pulls in: shipped together or not at all (see the docstring).
SDK_SET = ("boto3", "botocore", "s3transfer", "urllib3", "jmespath", "dateutil",
           "python_dateutil", "six")
# Files the serving path never loads (checked by importing the asset under Python 3.12 and
# running the API handler, see bench/infra.py). libonnxruntime.so is the C-API library for
# other language bindings; the Python module (onnxruntime_pybind11_state) is self-contained.
PRUNE_GLOBS = (
    "onnxruntime/capi/libonnxruntime.so*", "onnxruntime/transformers", "onnxruntime/quantization",
    "onnxruntime/tools", "onnxruntime/datasets", "numpy/**/tests", "numpy/f2py",
    "numpy/_core/include", "**/*.pyi", "bin",
)
CODE_PACKAGES = ("twolane", "functions")
PACKAGE_DATA = ("twolane/api/page",)  # non-Python files the runtime serves (the web page at /)
PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"],
}
REQUIRED_IN_ASSET = ("functions/api/handler.py", "functions/dropfolder/handler.py",
                     "functions/notifications/handler.py", "twolane/__init__.py")


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """What the Lambdas import: the core dependencies plus the `[serve]` extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["serve"])


def code_files() -> list[Path]:
    """The source files copied into the asset (twolane/ and the handlers, no CDK constructs),
    and the package data the runtime serves (the web page's files)."""
    files = []
    for pkg in CODE_PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            if f.name != "construct.py" and "__pycache__" not in f.parts:
                files.append(f)
    for folder in PACKAGE_DATA:
        files.extend(sorted(f for f in (REPO_ROOT / folder).rglob("*") if f.is_file()))
    return files


def copy_code(out: Path) -> None:
    for f in code_files():
        dest = out / f.relative_to(REPO_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)


def resolve_instant_bundle(bundle: str | Path) -> Path:
    """The instant bundle folder named by `bundle` (a bundle, or a bundles root: the newest),
    repo-relative unless absolute. Raises ConfigError with the command that builds one."""
    from twolane.bundle import BundleError, resolve_bundle

    src = Path(bundle)
    src = src if src.is_absolute() else REPO_ROOT / src
    try:
        return resolve_bundle(src, "instant")
    except BundleError as err:
        raise ConfigError(f"the Lambda asset ships the instant model, but {err}.\n"
                          "  Build it: .venv/bin/twolane build instant (make up does it), or "
                          "point instant.bundle in infra/config/<env>.json at one") from None


def fingerprint(architecture: str, bundle_dir: Path) -> str:
    """A hash of everything that decides the asset's content: the code, the dependency pins,
    this builder, the target platform and the bundle (its manifest holds every file's sha256).
    Same inputs, same asset: the CDK then reuses a staged asset instead of bundling again."""
    h = hashlib.sha256()
    inputs = [*code_files(), REPO_ROOT / "pyproject.toml", REPO_ROOT / "constraints.txt",
              Path(__file__).resolve(), bundle_dir / "manifest.json"]
    for f in inputs:
        if f.is_file():
            h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name)
                     .encode())
            h.update(f.read_bytes())
    h.update(f"{BUILDER_VERSION}|{architecture}|{'|'.join(PLATFORMS[architecture])}".encode())
    return h.hexdigest()


def install_dependencies(out: Path, architecture: str) -> None:
    """pip-install the Lambda's dependencies as binary cp312 wheels for the Lambda platform
    into `out` (no Docker; needs the package index)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--target", str(out), "--implementation", "cp", "--python-version", "3.12",
           "--only-binary=:all:", "--upgrade"]
    for plat in PLATFORMS[architecture]:
        cmd += ["--platform", plat]
    constraints = REPO_ROOT / "constraints.txt"
    if constraints.is_file() and constraints.read_text().strip():
        cmd += ["-c", str(constraints)]
    subprocess.run(cmd + requirements(), check=True)


def prune(out: Path, keep_sdk: bool = True) -> None:
    names = [] if keep_sdk else list(SDK_SET)
    for name in names:
        for p in [out / name, out / f"{name}.py", *out.glob(f"{name}-*.dist-info")]:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.is_file():
                p.unlink()
    for pattern in PRUNE_GLOBS:
        for p in list(out.glob(pattern)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    for p in list(out.rglob("__pycache__")):
        shutil.rmtree(p, ignore_errors=True)


def copy_bundle(out: Path, bundle_dir: Path) -> str:
    from twolane.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(bundle_dir, verify=True)
    except BundleError as err:
        raise ConfigError(f"the instant bundle {bundle_dir} is not usable: {err}") from None
    dest = out / BUNDLE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle_dir, dest)
    return manifest.version


def build_full(out: Path, architecture: str, bundle: str | Path | None,
               keep_sdk: bool = True) -> dict:
    """Build the deployable asset into `out` (created if missing; emptied if not)."""
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    bundle_dir = resolve_instant_bundle(bundle) if bundle is not None else None
    with tempfile.TemporaryDirectory(prefix="twolane-pip-") as tmp:
        staging = Path(tmp) / "asset"
        install_dependencies(staging, architecture)
        shutil.copytree(staging, out, dirs_exist_ok=True)
    copy_code(out)
    prune(out, keep_sdk)
    version = copy_bundle(out, bundle_dir) if bundle_dir is not None else None
    missing = [p for p in REQUIRED_IN_ASSET if not (out / p).is_file()]
    if missing:
        raise ConfigError(f"the Lambda asset in {out} lacks {', '.join(missing)}")
    return {"kind": "full", "architecture": architecture, "python": "3.12",
            "platforms": PLATFORMS[architecture], "bundle_version": version,
            "sdk_included": keep_sdk}


def build_code_only(out: Path) -> dict:
    """Handlers and the twolane package only, no dependencies, no bundle: enough to synth and
    to test the infrastructure offline, not to deploy."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_code(out)
    return {"kind": "code-only", "note": "handlers only, no dependencies: synth/tests, not deploy"}


def write_marker(out: Path, info: dict, started: float) -> dict:
    size = dir_size(out)
    info.update(size_bytes=size, build_seconds=round(time.perf_counter() - started, 1),
                built_at=datetime.now(UTC).isoformat(timespec="seconds"))
    (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.build_lambda_asset", description=__doc__
                                .splitlines()[0])
    p.add_argument("--env", default="dev", help="config to read (architecture, bundle)")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "lambda" / "instant"),
                   help="asset folder (default: build/lambda/instant)")
    p.add_argument("--bundle", default=None, help="instant bundle or bundles root to ship "
                   "('none': dependencies only, to measure them; not deployable)")
    p.add_argument("--code-only", action="store_true", help="copy handlers only (offline)")
    p.add_argument("--no-sdk", action="store_true",
                   help="leave boto3 and its dependencies out (use the runtime's)")
    args = p.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        cfg = load_config(args.env)
        if args.code_only:
            info = build_code_only(out)
        else:
            bundle = args.bundle or cfg.instant.bundle
            info = build_full(out, cfg.instant.architecture,
                              None if bundle == "none" else bundle, keep_sdk=not args.no_sdk)
    except (ConfigError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = write_marker(out, info, start)
    size = info["size_bytes"]
    print(f"{info['kind']} Lambda asset: {out} ({size / 2**20:.1f} MiB unzipped; "
          f"Lambda limit 250 MiB)")
    if size > LAMBDA_UNZIPPED_LIMIT:
        print("error: over the Lambda 250 MB unzipped limit", file=sys.stderr)
        return 1
    if size > TARGET_BYTES and info["kind"] == "full":
        print("warning: over the 100 MiB target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
