"""Build the instant-lane Lambda asset folder (no Docker): the project with its `[serve]`
extra installed for the Lambda platform, plus the instant model bundle.

    .venv/bin/python -m infra.build_lambda_asset --env dev          # full asset (needs PyPI)
    .venv/bin/python -m infra.build_lambda_asset --code-only --out DIR   # handlers only, offline

Layout of the asset (= /var/task in the Lambda):

    twolane/, functions/, numpy/, onnxruntime/, ...   code and dependencies (cp312 wheels)
    bundle/                                           the instant bundle (TWOLANE_INSTANT_BUNDLE)
    .twolane-asset.json                               what was built, for whom, how big

The three Python Lambdas (API, drop folder, job notifications) share this one asset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from infra.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".twolane-asset.json"
BUNDLE_DIR = "bundle"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
TARGET_BYTES = 100 * 1024 * 1024
# The Lambda Python runtime ships boto3/botocore/s3transfer; leaving ours out saves ~25 MB.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
# Never needed at run time in the Lambda.
PRUNE_DIRS = ("infra", "model_build", "recommender", "bin")
# Files the serving path never loads (checked by importing the asset under Python 3.12 and
# running the API handler, see bench/infra.py). libonnxruntime.so is the C-API library for
# other language bindings; the Python module (onnxruntime_pybind11_state) is self-contained.
PRUNE_GLOBS = (
    "onnxruntime/capi/libonnxruntime.so*", "onnxruntime/transformers", "onnxruntime/quantization",
    "onnxruntime/tools", "onnxruntime/datasets", "numpy/**/tests", "numpy/f2py",
    "numpy/_core/include", "**/*.pyi",
)
CODE_PACKAGES = ("twolane", "functions")
PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"],
}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def copy_code(out: Path) -> None:
    """twolane/ and functions/ source (no caches, no CDK constructs)."""
    for pkg in CODE_PACKAGES:
        shutil.copytree(REPO_ROOT / pkg, out / pkg, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "construct.py"))


def prune(out: Path, keep_boto3: bool) -> None:
    names = list(PRUNE_DIRS) + ([] if keep_boto3 else list(RUNTIME_PROVIDED))
    for name in names:
        for p in [out / name, *out.glob(f"{name}-*.dist-info")]:
            if p.is_dir():
                shutil.rmtree(p)
    for pattern in PRUNE_GLOBS:
        for p in list(out.glob(pattern)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    for p in list(out.rglob("__pycache__")):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob("functions/*/construct.py"):
        p.unlink()


def copy_bundle(out: Path, bundle: str) -> str:
    from twolane.bundle import BundleError, read_manifest, resolve_bundle

    src = Path(bundle)
    src = src if src.is_absolute() else REPO_ROOT / src
    try:
        folder = resolve_bundle(src, "instant")
        manifest = read_manifest(folder, verify=True)
    except BundleError as err:
        raise ConfigError(f"no usable instant bundle at {src}: {err}\n"
                          "  Build one first: twolane build instant") from None
    dest = out / BUNDLE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    return manifest.version


def build_full(out: Path, architecture: str, bundle: str, keep_boto3: bool = False) -> dict:
    wheels = out.parent / f"{out.name}-wheels"
    for d in (out, wheels):
        if d.exists():
            shutil.rmtree(d)
    wheels.mkdir(parents=True)
    py = sys.executable
    # 1. the project as a pure-Python wheel (no build isolation: setuptools is in the venv)
    subprocess.run([py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO_ROOT)], check=True)
    wheel = next(wheels.glob("twolane-*.whl"))
    # 2. it and its [serve] dependencies, as binary wheels for the Lambda platform
    cmd = [py, "-m", "pip", "install", "-q", "--target", str(out), "--implementation", "cp",
           "--python-version", "3.12", "--only-binary=:all:", "--upgrade"]
    for plat in PLATFORMS[architecture]:
        cmd += ["--platform", plat]
    constraints = REPO_ROOT / "constraints.txt"
    if constraints.is_file() and constraints.read_text().strip():
        cmd += ["-c", str(constraints)]
    subprocess.run(cmd + [f"{wheel}[serve]"], check=True)
    shutil.rmtree(wheels)
    prune(out, keep_boto3)
    version = copy_bundle(out, bundle) if bundle != "none" else None
    return {"kind": "full", "architecture": architecture, "python": "3.12",
            "platforms": PLATFORMS[architecture], "bundle_version": version,
            "boto3_included": keep_boto3}


def build_code_only(out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_code(out)
    return {"kind": "code-only", "note": "handlers only, no dependencies: synth/tests, not deploy"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.build_lambda_asset", description=__doc__
                                .splitlines()[0])
    p.add_argument("--env", default="dev", help="config to read (architecture, asset_dir, bundle)")
    p.add_argument("--out", default=None, help="asset folder (default: instant.asset_dir)")
    p.add_argument("--bundle", default=None, help="instant bundle or bundles root to ship "
                   "('none': dependencies only, to measure them; not deployable)")
    p.add_argument("--code-only", action="store_true", help="copy handlers only (offline)")
    p.add_argument("--keep-boto3", action="store_true", help="ship our own boto3/botocore")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.env)
        out = Path(args.out) if args.out else REPO_ROOT / cfg.instant.asset_dir
        start = time.perf_counter()
        if args.code_only:
            info = build_code_only(out)
        else:
            info = build_full(out, cfg.instant.architecture, args.bundle or cfg.instant.bundle,
                              args.keep_boto3)
    except (ConfigError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = dir_size(out)
    info.update(size_bytes=size, build_seconds=round(time.perf_counter() - start, 1),
                built_at=datetime.now(UTC).isoformat(timespec="seconds"))
    (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")
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
