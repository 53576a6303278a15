"""The batch endpoint's model data (`model.tar.gz`), made by the app and shipped as a CDK asset.

`cdk deploy` uploads the file to the CDK bootstrap bucket before CloudFormation runs, so the
SageMaker model points at an object that exists on the very first deploy (no manual upload, no
two-step deploy). `batch.model_path` names a batch bundle (or a bundles root: the newest batch
bundle) or a ready model.tar.gz; `batch.model_data_url` (s3://) skips all this for ops who keep
models in S3 themselves.

The archive is packed deterministically (sorted entries, fixed owner and times, gzip without a
timestamp), so the same bundle always gives the same bytes and the same asset hash: re-running
`cdk deploy` with an unchanged model changes nothing. It is cached under build/batch-model/.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import tempfile
from pathlib import Path

from infra.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "build" / "batch-model"


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_tar_gz(folder: Path, out: Path) -> Path:
    """`folder`'s content at the archive root (what SageMaker unpacks to /opt/ml/model), with
    byte-identical output for identical input."""
    tmp = out.with_suffix(".partial")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                               mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False, filter=_reset)
    tmp.replace(out)
    return out


def model_artifact(model_path: str | Path, instant_bundle: Path | None = None,
                   cache_dir: Path = CACHE_DIR) -> Path:
    """The model.tar.gz to ship: `model_path` itself when it is a file, else the batch bundle
    it names packed as `model_build.package` lays it out (bundle at the root, instant/ for
    the ensemble, code/). Raises ConfigError saying how to get one."""
    src = _resolve(model_path)
    if src.is_file():
        if not src.name.endswith(".tar.gz"):
            raise ConfigError(f"batch.model_path {src} is a file but not a .tar.gz")
        return src
    from model_build.package import stage
    from twolane.bundle import BundleError, resolve_bundle

    try:
        bundle = resolve_bundle(src, "batch")
    except BundleError as err:
        raise ConfigError(
            f"the batch endpoint needs a model, but {err}.\n"
            "  Build it:        .venv/bin/twolane build batch   (make up starts it in the "
            "background)\n"
            "  or point batch.model_path at a bundle or model.tar.gz, or batch.model_data_url "
            "at one in S3,\n"
            "  or deploy without the batch lane for now: -c batch=false (--no-batch)") from None
    with tempfile.TemporaryDirectory(prefix="twolane-model-") as tmp:
        staged = Path(tmp) / "model"
        try:
            stage(bundle, staged, instant_bundle=instant_bundle)
        except (BundleError, ValueError) as err:
            raise ConfigError(f"cannot pack the batch bundle {bundle}: {err}") from None
        out = cache_dir / f"{bundle.name}-{_tree_digest(staged)[:16]}.tar.gz"
        if not out.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            write_tar_gz(staged, out)
    return out
