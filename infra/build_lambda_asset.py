"""Build a Lambda asset folder (no Docker): this project's code, its core dependencies plus
the lane's extra installed for the Lambda platform, and the lane's model bundle. Two lanes:

    instant   core + `[serve]`         bundle/ = the instant bundle     API, drop folder, notifications
    batch     core + `[batch-lambda]`  bundle/ = the batch bundle       the batch worker (batch.host
              (onnxruntime, tokenizers;           (int8 ONNX, tokenizer, "lambda"), one invocation
              no torch, no fastapi)              instant/ inside)        per shard of a job

`cdk synth` / `cdk deploy` run this themselves (CDK local bundling, `infra/lambda_code.py`);
the command line is for measuring or inspecting an asset by hand:

    .venv/bin/python -m infra.build_lambda_asset --env dev --out build/lambda/instant  # needs PyPI
    .venv/bin/python -m infra.build_lambda_asset --lane batch --env dev   # build/lambda/batch
    .venv/bin/python -m infra.build_lambda_asset --code-only --out DIR   # handlers only, offline

Layout of the asset (= /var/task in the Lambda):

    twolane/, functions/, numpy/, onnxruntime/, boto3/, ...   code and dependencies (cp312 wheels)
    bundle/                                                  the lane's bundle (TWOLANE_INSTANT_BUNDLE,
                                                             TWOLANE_BATCH_BUNDLE)
    encoder/                                                 instant asset: the sentence encoder summaries
                                                             cluster with (TWOLANE_SENTENCE_ENCODER;
                                                             `twolane build encoder`), when built
    .twolane-asset.json                                      what was built, for whom, how big
    **/__pycache__/*.cpython-312.pyc                         bytecode, compiled at build time

The batch asset leaves out the bundle's GPU-only model (model.fp16.onnx: CUDA only, never
loaded on Lambda's CPUs; the manifest still names it, and the predictor reads the manifest
without verifying files). Either asset over Lambda's 250 MiB unzipped limit fails the build
with its biggest parts named.

Bytecode ships in the asset: /var/task is read-only, so without it every cold start compiles
each module it imports from source and can never keep the result. The .pyc files are
compiled by a Python 3.12 (the runtime's version) with unchecked-hash invalidation (valid
whatever the files' timestamps after unzipping); bench/cold_start.py measures the difference.

The three Python Lambdas (API, drop folder, job notifications) share the instant asset.

boto3 and its dependencies (botocore, s3transfer, urllib3, jmespath, python-dateutil, six) are
shipped as one consistent set, pinned by constraints.txt, rather than taken from the runtime.
The job store's compare-and-swap needs S3 conditional writes (PutObject IfMatch/IfNoneMatch),
which only recent botocore releases know, and the SDK inside the Lambda runtime is chosen and
updated by AWS; shipping the set costs ~23 MiB unzipped (17 MiB zipped) and runs exactly the
versions the tests ran. Shipping only part of it (as before) let our urllib3/jmespath shadow the runtime's boto3's.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infra.config import ConfigError, load_config

if TYPE_CHECKING:
    from twolane.bundle import Manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = ".twolane-asset.json"
BUNDLE_DIR = "bundle"
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
TARGET_BYTES = 100 * 1024 * 1024
BUILDER_VERSION = "3"  # bump when the asset's layout or pruning changes (part of the asset hash)
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
PAGE_DATA = REPO_ROOT / "twolane" / "api" / "page"  # static files the app serves
PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"],
}
REQUIRED_IN_ASSET = ("functions/api/handler.py", "functions/dropfolder/handler.py",
                     "functions/notifications/handler.py", "twolane/__init__.py",
                     "twolane/api/page/index.html")
REQUIRED_IN_BATCH_ASSET = ("functions/batch_worker/handler.py", "twolane/__init__.py")
Lane = Literal["instant", "batch"]


@dataclass(frozen=True)
class LaneAsset:
    """What one lane's Lambda asset holds besides the code."""

    extra: str  # the pyproject extra installed on top of the core dependencies
    required: tuple[str, ...]  # files the asset must hold (the handlers it serves)
    target_bytes: int | None  # warn over this (unzipped); the hard limit is Lambda's 250 MiB
    unused: tuple[str, ...] = ()  # installed distributions serving never imports: left out


# tokenizers requires huggingface_hub (and its download stack) for Tokenizer.from_pretrained;
# the worker reads tokenizer.json from the bundle and never imports them (checked by importing
# the asset under Python 3.12 and predicting with the batch bundle: none of them is loaded).
# Leaving them out saves ~25 MiB. Module names, then the distributions' names where they differ.
HUB_STACK = ("huggingface_hub", "hf_xet", "fsspec", "yaml", "_yaml", "pyyaml", "tqdm",
             "httpx2", "httpcore2", "anyio", "h11", "idna", "truststore", "click", "filelock")
LANES: dict[str, LaneAsset] = {
    "instant": LaneAsset("serve", REQUIRED_IN_ASSET, TARGET_BYTES),
    "batch": LaneAsset("batch-lambda", REQUIRED_IN_BATCH_ASSET, None, unused=HUB_STACK),
}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def requirements(lane: Lane = "instant", pyproject: Path = REPO_ROOT / "pyproject.toml"
                 ) -> list[str]:
    """What the lane's Lambdas import: the core dependencies plus the lane's extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"]) + list(
        project["optional-dependencies"][LANES[lane].extra])


def code_files() -> list[Path]:
    """The files copied into the asset: twolane/ and the handlers (functions/; their CDK
    constructs live in infra/lambdas/), plus the package data the app serves (the web page
    under twolane/api/page/: the app mounts that folder at import, so an asset without it
    cannot start)."""
    files = []
    for pkg in CODE_PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            if "__pycache__" not in f.parts:
                files.append(f)
    files += sorted(f for f in PAGE_DATA.rglob("*") if f.is_file() and f.suffix != ".pyc"
                    and "__pycache__" not in f.parts and f.suffix != ".py")
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


def resolve_batch_bundle(model_path: str | Path) -> Path:
    """The batch bundle folder named by `batch.model_path` (a bundle, or a bundles root: the
    newest), repo-relative unless absolute, holding the instant bundle its ensemble was tuned
    with. Raises ConfigError saying how to get one."""
    from twolane.bundle import BundleError, read_manifest, resolve_bundle
    from twolane.predictors.batch import INSTANT_DIR

    src = Path(model_path)
    src = src if src.is_absolute() else REPO_ROOT / src
    if src.is_file():
        raise ConfigError(f"batch.model_path {src} is a file; batch.host 'lambda' ships a batch "
                          "bundle folder (or a bundles root), not a model.tar.gz")
    try:
        bundle = resolve_bundle(src, "batch")
        manifest = read_manifest(bundle)
    except BundleError as err:
        raise ConfigError(
            f"the batch worker Lambda ships the batch model, but {err}.\n"
            "  Build it: .venv/bin/twolane build batch, or point batch.model_path at a bundle,\n"
            "  or deploy without the batch lane for now: -c batch=false (--no-batch)") from None
    if manifest.ensemble and not (bundle / INSTANT_DIR / "manifest.json").is_file():
        raise ConfigError(f"the batch bundle {bundle} is an ensemble but holds no "
                          f"{INSTANT_DIR}/ bundle; rebuild it (twolane build batch --retune)")
    return bundle


def fingerprint(architecture: str, bundle_dir: Path, lane: Lane = "instant") -> str:
    """A hash of everything that decides the asset's content: the lane, the code, the
    dependency pins, this builder, the target platform and the bundle (its manifest holds every
    file's sha256, the embedded instant bundle's included).
    Same inputs, same asset: the CDK then reuses a staged asset instead of bundling again."""
    h = hashlib.sha256()
    inputs = [*code_files(), REPO_ROOT / "pyproject.toml", REPO_ROOT / "constraints.txt",
              Path(__file__).resolve(), bundle_dir / "manifest.json"]
    for f in inputs:
        if f.is_file():
            h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name)
                     .encode())
            h.update(f.read_bytes())
    h.update(f"{BUILDER_VERSION}|{lane}|{architecture}|{'|'.join(PLATFORMS[architecture])}"
             .encode())
    return h.hexdigest()


def install_dependencies(out: Path, architecture: str, lane: Lane = "instant") -> None:
    """pip-install the lane's dependencies as binary cp312 wheels for the Lambda platform
    into `out` (no Docker; needs the package index)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--target", str(out), "--implementation", "cp", "--python-version", "3.12",
           "--only-binary=:all:", "--upgrade"]
    for plat in PLATFORMS[architecture]:
        cmd += ["--platform", plat]
    constraints = REPO_ROOT / "constraints.txt"
    if constraints.is_file() and constraints.read_text().strip():
        cmd += ["-c", str(constraints)]
    subprocess.run(cmd + requirements(lane), check=True)


def prune(out: Path, keep_sdk: bool = True, lane: Lane = "instant") -> None:
    names = ([] if keep_sdk else list(SDK_SET)) + list(LANES[lane].unused)
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


def python312() -> str | None:
    """A working Python 3.12 interpreter's path (this one, or python3.12 on PATH), else None."""
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    candidates = [shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for found in filter(None, candidates):
        p = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2] == (3, 12), "
                            "sys.executable)"], capture_output=True, text=True, check=False)
        ok, _, path = p.stdout.strip().partition(" ")
        if p.returncode == 0 and ok == "True":
            return path
    return None


def precompile(out: Path) -> str:
    """Compile every module in `out` to Python 3.12 bytecode (see the module docstring).
    Returns what was done; without a python3.12 on PATH the asset ships sources only (it
    works, its cold start is slower) and the answer says so."""
    py = python312()
    if py is None:
        return "none: no python3.12 to compile with (sources only; slower cold start)"
    p = subprocess.run([py, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                        "unchecked-hash", str(out)], capture_output=True, text=True, check=False)
    # A few third-party files are not meant to compile (templates, Python 2 leftovers);
    # compileall then exits 1 having compiled the rest.
    return "cpython-312 unchecked-hash" + ("" if p.returncode == 0 else " (some files skipped)")


def gpu_only_files(manifest: Manifest) -> set[str]:
    """Files of the bundle's models that only CUDA loads (the batch lane's fp16 encoder)."""
    from twolane.predictors.batch import GPU_MODEL

    entry = manifest.models.get(GPU_MODEL) if manifest.lane == "batch" else None
    return {entry.file} if entry is not None else set()


def copy_bundle(out: Path, bundle_dir: Path, lane: Lane = "instant") -> str:
    """Copy the lane's bundle (verified against its manifest) to out/bundle/; the batch lane's
    without its GPU-only model. Returns the bundle's version."""
    from twolane.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(bundle_dir, verify=True)
    except BundleError as err:
        raise ConfigError(f"the {lane} bundle {bundle_dir} is not usable: {err}") from None
    skip = gpu_only_files(manifest) if lane == "batch" else set()
    dest = out / BUNDLE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(bundle_dir, dest,
                    ignore=lambda d, names: [n for n in names if Path(d) == bundle_dir
                                             and n in skip])
    return manifest.version


ENCODER_DIR = "encoder"


def copy_encoder(out: Path, bundles: Path = REPO_ROOT / "bundles") -> str | None:
    """Copy the sentence encoder (the newest under `bundles`/encoder/, made by `twolane build
    encoder`) to out/encoder/ for the API's summary points; its name, or None when there is none
    (points then come from the comments' words: twolane.summaries.embed)."""
    from twolane.summaries.embed import find_encoder

    src = find_encoder(None, bundles)
    if src is None:
        return None
    shutil.copytree(src, out / ENCODER_DIR)
    return src.name


def check_size(out: Path, lane: Lane = "instant") -> int:
    """The asset's unzipped size in bytes; ConfigError naming its biggest parts when it is over
    Lambda's 250 MiB limit (Lambda would refuse it at deploy)."""
    size = dir_size(out)
    if size > LAMBDA_UNZIPPED_LIMIT:
        parts = sorted(((dir_size(p) if p.is_dir() else p.stat().st_size, p.name)
                        for p in out.iterdir()), reverse=True)[:6]
        biggest = ", ".join(f"{name} {n / 2**20:.1f}" for n, name in parts)
        raise ConfigError(
            f"the {lane} Lambda asset in {out} is {size / 2**20:.1f} MiB unzipped, over "
            f"Lambda's limit of {LAMBDA_UNZIPPED_LIMIT / 2**20:.0f} MiB; biggest parts (MiB): "
            f"{biggest}")
    return size


def build_full(out: Path, architecture: str, bundle: str | Path | None,
               keep_sdk: bool = True, lane: Lane = "instant") -> dict:
    """Build the deployable asset of `lane` into `out` (created if missing; emptied if not).
    `bundle`: the instant bundle (or bundles root) for "instant", the batch bundle (or bundles
    root) for "batch"; None: dependencies only (to measure them; not deployable)."""
    out.mkdir(parents=True, exist_ok=True)
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    bundle_dir = None
    if bundle is not None:
        bundle_dir = resolve_batch_bundle(bundle) if lane == "batch" \
            else resolve_instant_bundle(bundle)
    with tempfile.TemporaryDirectory(prefix="twolane-pip-") as tmp:
        staging = Path(tmp) / "asset"
        install_dependencies(staging, architecture, lane)
        shutil.copytree(staging, out, dirs_exist_ok=True)
    copy_code(out)
    prune(out, keep_sdk, lane)
    bytecode = precompile(out)
    version = copy_bundle(out, bundle_dir, lane) if bundle_dir is not None else None
    if lane == "instant" and bundle_dir is not None:
        copy_encoder(out)
    missing = [p for p in LANES[lane].required if not (out / p).is_file()]
    if missing:
        raise ConfigError(f"the {lane} Lambda asset in {out} lacks {', '.join(missing)}")
    check_size(out, lane)
    return {"kind": "full", "lane": lane, "architecture": architecture, "python": "3.12",
            "platforms": PLATFORMS[architecture], "bundle_version": version,
            "sdk_included": keep_sdk, "bytecode": bytecode}


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
    p.add_argument("--lane", choices=tuple(LANES), default="instant",
                   help="instant: the API/drop-folder/notifications asset; batch: the batch "
                   "worker's (batch.host 'lambda')")
    p.add_argument("--out", default=None, help="asset folder (default: build/lambda/<lane>)")
    p.add_argument("--bundle", default=None, help="the lane's bundle or bundles root to ship "
                   "(default: instant.bundle or batch.model_path; 'none': dependencies only, to "
                   "measure them; not deployable)")
    p.add_argument("--code-only", action="store_true", help="copy handlers only (offline)")
    p.add_argument("--no-sdk", action="store_true",
                   help="leave boto3 and its dependencies out (use the runtime's)")
    args = p.parse_args(argv)
    lane: Lane = args.lane
    out = Path(args.out or REPO_ROOT / "build" / "lambda" / lane)
    start = time.perf_counter()
    try:
        cfg = load_config(args.env)
        if args.code_only:
            info = build_code_only(out)
        else:
            if lane == "batch":
                bundle = args.bundle or cfg.batch.model_path
                arch = cfg.batch.lambda_architecture
            else:
                bundle = args.bundle or cfg.instant.bundle
                arch = cfg.instant.architecture
            info = build_full(out, arch, None if bundle == "none" else bundle,
                              keep_sdk=not args.no_sdk, lane=lane)
    except (ConfigError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = write_marker(out, info, start)
    size = info["size_bytes"]
    print(f"{info['kind']} {lane} Lambda asset: {out} ({size / 2**20:.1f} MiB unzipped; "
          f"Lambda limit 250 MiB)")
    target = LANES[lane].target_bytes
    if target is not None and size > target and info["kind"] == "full":
        print(f"warning: over the {target / 2**20:.0f} MiB target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
