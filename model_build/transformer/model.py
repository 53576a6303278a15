"""The encoder with two heads (32 labels, 5 sentiment classes) and how to load it offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_build.transformer import packaged_minilm

MAX_LENGTH = 128  # tokens; covers 99.5 % of the NHS comments (median 19)


def default_base_model() -> str:
    """`TWOLANE_BATCH_BASE_MODEL` if set, else the packaged MiniLM (no hub needed)."""
    return os.environ.get("TWOLANE_BATCH_BASE_MODEL") or str(packaged_minilm())


def load_tokenizer(model_id_or_path: str, max_length: int = MAX_LENGTH):
    """The model's fast tokenizer as a `tokenizers.Tokenizer`: no fixed padding, truncation on.

    Loaded with transformers' AutoTokenizer (the real loading path), then its backend is used
    for both training and serving so the two tokenise identically.
    """
    from transformers import AutoTokenizer

    if Path(model_id_or_path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(model_id_or_path)
    if not getattr(tok, "is_fast", False):
        raise RuntimeError(f"{model_id_or_path} has no fast tokenizer (tokenizer.json) to serve with")
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    check_tokenizer(backend)
    return backend


def check_tokenizer(tokenizer) -> None:
    """Fail loudly if the tokenizer maps ordinary words to [UNK] (a silently ignored vocab)."""
    unk = tokenizer.token_to_id("[UNK]")
    enc = tokenizer.encode("The nurses were kind and the waiting room was clean")
    special = {tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]")}
    words = [i for i in enc.ids if i not in special]
    if not words or (unk is not None and all(i == unk for i in words)):
        raise RuntimeError("tokenizer turns plain English into [UNK] only: its vocabulary was not loaded")


class EncoderClassifier(nn.Module):
    """Shared encoder, attention-masked mean pooling, a multilabel head and a sentiment head."""

    def __init__(self, encoder: nn.Module, n_labels: int, n_sentiment: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        config: Any = encoder.config
        hidden = int(config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.label_head = nn.Linear(hidden, n_labels)
        self.sentiment_head = nn.Linear(hidden, n_sentiment)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        h = out[0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-6)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Logits: (n x labels, n x sentiment classes)."""
        x = self.dropout(self.pooled(input_ids, attention_mask))
        return self.label_head(x), self.sentiment_head(x)


class ProbabilityModel(nn.Module):
    """What is exported to ONNX: probabilities out (sigmoid per label, softmax for sentiment)."""

    def __init__(self, model: EncoderClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        label_logits, sent_logits = self.model(input_ids, attention_mask)
        return torch.sigmoid(label_logits), torch.softmax(sent_logits, dim=-1)


def load_encoder(model_id_or_path: str) -> nn.Module:
    """Pretrained encoder with eager attention (so onnxruntime can fuse attention after export)."""
    from transformers import AutoModel

    if Path(model_id_or_path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModel.from_pretrained(model_id_or_path, attn_implementation="eager")


def tiny_encoder(model_id_or_path: str, vocab_size: int, seed: int = 0) -> nn.Module:
    """A randomly initialised 2-layer, hidden-64 encoder of the same family (for tests)."""
    from transformers import AutoConfig, AutoModel

    if Path(model_id_or_path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = AutoConfig.from_pretrained(model_id_or_path)
    cfg.vocab_size = vocab_size
    cfg.hidden_size = 64
    cfg.num_hidden_layers = 2
    cfg.num_attention_heads = 2
    cfg.intermediate_size = 128
    torch.manual_seed(seed)
    return AutoModel.from_config(cfg, attn_implementation="eager")
