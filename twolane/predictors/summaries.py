"""Summaries of many comments by a causal language model (transformers + torch).

The batch-lane container serves it on the same async contract (`"target": "summary"`) when it
is given a model (`TWOLANE_GENERATION_MODEL`: a local path, or an id in the local HF cache; no
download is attempted). torch and transformers are imported only here, and only on the first
summary, so the classifier's cold start does not pay for them. On AWS a real LLM runs in its
own image (see sagemaker/README.md).

The tiny test model is built by `model_build.tiny_llm.build_tiny_model`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twolane.rules import is_unlabellable, normalise

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 1024


class Generator:
    """A causal LM and its tokenizer, loaded once; `summarise` asks it one question of many
    comments (greedy decoding, so the same input gives the same summary)."""

    def __init__(self, model: Any, tokenizer: Any, version: str):
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        cfg = model.config
        self.context = int(getattr(cfg, "max_position_embeddings", None)
                           or getattr(cfg, "n_positions", None) or DEFAULT_CONTEXT)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | None = None) -> Generator:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = Path(name_or_path)
        local_only = True  # never fetch weights at serving time
        tok = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_only)
        model: Any = AutoModelForCausalLM.from_pretrained(str(name_or_path), local_files_only=local_only)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        version = p.name if p.exists() else str(name_or_path)
        return cls(model, tok, version)

    def _prompt(self, instruction: str, comments: Sequence[str]) -> str:
        body = "\n".join(f"- {c}" for c in comments)
        user = f"{instruction}\n\nComments:\n{body}"
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return f"{user}\n\nSummary:\n"

    def _n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit(self, instruction: str, texts: Sequence[object], max_new_tokens: int) -> list[str]:
        """The comments (blank/placeholder ones dropped) that fit the context, in order."""
        budget = self.context - max_new_tokens - self._n_tokens(self._prompt(instruction, []))
        used: list[str] = []
        for t in texts:
            s = normalise(t).strip().replace("\n", " ")
            if is_unlabellable(s):
                continue
            cost = self._n_tokens(f"- {s}\n")
            if cost > budget:
                break
            used.append(s)
            budget -= cost
        return used

    def summarise(self, texts: Sequence[object], instruction: str,
                  max_new_tokens: int = 200) -> tuple[str, int]:
        """(summary, number of comments used)."""
        import torch

        max_new_tokens = max(1, min(max_new_tokens, self.context // 2))
        used = self.fit(instruction, texts, max_new_tokens)
        if not used:
            return "", 0
        enc = self.tokenizer(self._prompt(instruction, used), return_tensors="pt",
                             add_special_tokens=False).to(self.model.device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.inference_mode():  # no token_type_ids: BERT-style tokenizers add them
            out = self.model.generate(input_ids=enc["input_ids"],
                                      attention_mask=enc["attention_mask"],
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=pad)
        new = out[0, enc["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip(), len(used)
