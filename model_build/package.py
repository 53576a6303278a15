"""Pack a batch bundle as the `model.tar.gz` SageMaker hosts (it is unpacked to /opt/ml/model).

Layout (what the AWS deep-learning containers expect: model files at the archive root, the
inference script and its requirements under code/)::

    manifest.json, model.int8.onnx, model.fp16.onnx, tokenizer.json   the batch bundle
    instant/manifest.json, instant/*.onnx                             the instant bundle the
                                                                      ensemble was tuned with
    code/inference.py        = sagemaker/serve.py (model_fn/input_fn/predict_fn/output_fn, and
                               the HTTP server when run as a file)
    code/requirements.txt    = sagemaker/requirements.txt
    code/twolane/            the serving modules of this package (pure Python), so the DLC
                             can import them without installing anything from outside PyPI

    python -m model_build.package --bundle bundles/batch/<version> --out build/model.tar.gz
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
from pathlib import Path

from twolane.bundle import read_manifest, resolve_bundle
from twolane.settings import REPO_ROOT

SERVE_PY = REPO_ROOT / "sagemaker" / "serve.py"
REQUIREMENTS = REPO_ROOT / "sagemaker" / "requirements.txt"
PACKAGE = REPO_ROOT / "twolane"
NOT_SERVING = ("api", "dropfolder", "__pycache__")  # not needed in the container


def _ignore(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in NOT_SERVING or n.endswith(".pyc")]


def stage(batch_bundle: Path, dest: Path, instant_bundle: Path | None = None) -> Path:
    """Lay the model folder out in `dest` (what /opt/ml/model will hold)."""
    batch_bundle = resolve_bundle(batch_bundle, "batch")
    manifest = read_manifest(batch_bundle, verify=True)
    shutil.copytree(batch_bundle, dest, dirs_exist_ok=True)
    if manifest.ensemble and not (dest / "instant" / "manifest.json").is_file():
        if instant_bundle is None:
            raise ValueError(f"{batch_bundle} is an ensemble but holds no instant/ bundle: "
                             "pass instant_bundle")
        shutil.copytree(resolve_bundle(instant_bundle, "instant"), dest / "instant")
    code = dest / "code"
    code.mkdir(exist_ok=True)
    shutil.copy2(SERVE_PY, code / "inference.py")
    shutil.copy2(REQUIREMENTS, code / "requirements.txt")
    shutil.copytree(PACKAGE, code / "twolane", ignore=_ignore)
    return dest


def pack(batch_bundle: Path, out: Path, instant_bundle: Path | None = None) -> Path:
    """Write `out` (model.tar.gz) from a batch bundle; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(Path(batch_bundle), Path(tmp) / "model", instant_bundle)
        with tarfile.open(out, "w:gz") as tar:
            for p in sorted(staged.iterdir()):
                tar.add(p, arcname=p.name)  # files at the archive root, no top folder
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Pack a batch bundle as SageMaker's model.tar.gz")
    ap.add_argument("--bundle", type=Path, default=REPO_ROOT / "bundles",
                    help="batch bundle folder or bundles root")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "model.tar.gz")
    ap.add_argument("--instant", type=Path, default=None,
                    help="instant bundle (only if the batch bundle holds no instant/)")
    a = ap.parse_args()
    path = pack(a.bundle, a.out, a.instant)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
