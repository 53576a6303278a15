"""Versioned artefact bundles: a folder of model files plus `manifest.json`.

Both lanes write and read the same format. Layout::

    bundles/<lane>/<version>/manifest.json
    bundles/<lane>/<version>/<model files named in manifest.files>

`version` sorts by time (UTC timestamp + short data fingerprint), so the newest is the max.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
Lane = Literal["instant", "batch"]


class ModelEntry(BaseModel):
    """One model file in the bundle and what it predicts."""

    file: str
    task: Literal["multilabel", "sentiment", "generation"]
    kind: str  # e.g. "tfidf-linear", "tfidf-xgboost", "encoder-int8", "encoder-fp16"
    labels: list[str] = Field(default_factory=list)  # output order
    thresholds: list[float] = Field(default_factory=list)  # per label, multilabel only
    inputs: dict[str, str] = Field(default_factory=dict)  # ONNX input name -> meaning
    outputs: dict[str, str] = Field(default_factory=dict)  # ONNX output name -> meaning
    extra: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """What a bundle holds, how it was made and how good it is."""

    lane: Lane
    version: str
    created_at: str
    labels: list[str]  # the multilabel taxonomy, in output order
    sentiment_classes: list[str] = Field(default_factory=list)
    models: dict[str, ModelEntry]  # name -> entry, e.g. "linear", "xgboost", "sentiment"
    default_model: str  # name in `models` (or "ensemble") that serves /v1/predict
    ensemble: dict[str, Any] = Field(default_factory=dict)  # members, weights, thresholds
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256
    data: dict[str, Any] = Field(default_factory=dict)  # training-data fingerprint, rows, split
    metrics: dict[str, Any] = Field(default_factory=dict)  # test-split metrics per model
    parity: dict[str, Any] = Field(default_factory=dict)  # ONNX vs in-memory agreement
    library_versions: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)  # training configuration


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version(data_fingerprint: str) -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + data_fingerprint[:8]


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Hash every file the manifest names (models and extra files) and write manifest.json."""
    files = {m.file for m in manifest.models.values()} | set(manifest.files)
    manifest.files = {f: sha256_file(bundle_dir / f) for f in sorted(files)}
    path = bundle_dir / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return path


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or does not match its manifest."""


def read_manifest(bundle_dir: Path, verify: bool = False) -> Manifest:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}")
    manifest = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if verify:
        for rel, digest in manifest.files.items():
            f = Path(bundle_dir) / rel
            if not f.is_file() or sha256_file(f) != digest:
                raise BundleError(f"{rel} in {bundle_dir} is missing or does not match its hash")
    return manifest


def latest_bundle(root: Path, lane: Lane) -> Path | None:
    """The newest complete bundle under root/<lane>/, or None."""
    lane_dir = Path(root) / lane
    if not lane_dir.is_dir():
        return None
    done = [p for p in lane_dir.iterdir() if (p / MANIFEST).is_file()]
    return max(done, key=lambda p: p.name) if done else None


def resolve_bundle(path_or_root: str | os.PathLike[str], lane: Lane) -> Path:
    """A bundle folder itself, or the newest bundle of `lane` under a bundles root."""
    p = Path(path_or_root)
    if (p / MANIFEST).is_file():
        return p
    found = latest_bundle(p, lane)
    if found is None:
        raise BundleError(f"no {lane} bundle at {p} (run `twolane build {lane}`)")
    return found
