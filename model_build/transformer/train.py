"""Fine-tune the encoder (multilabel BCE with positive-class weights + sentiment CE) and
predict; thresholds and the ensemble are tuned on the validation fold by model_build.batch_tune.

Losses: the label BCE counts only comments with at least one label (the scoring rule's rows, and
what the instant lane's label models train on: a comment the labellers left without any label is
not a "no theme applies" example); the sentiment CE counts comments with a sentiment, with
ordinal label smoothing (part of the target's mass on the neighbouring classes of the 1..5
scale, so "very positive" vs "positive" costs less than positive vs negative). A single-label
taxonomy (a data spec's) trains its label head with softmax cross-entropy instead of the BCE: one
class per comment, served by its most probable label (the sigmoid of the same logits keeps that
order, so the exported graph is unchanged)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from model_build.transformer.model import EncoderClassifier


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 32
    encoder_lr: float = 1.5e-4
    head_lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.06  # share of steps
    sentiment_weight: float = 1.0  # loss = BCE + w * CE
    sentiment_smoothing: float = 0.1  # share of the target moved to the neighbouring classes
    labelled_rows_only: bool = True  # label BCE only on comments with at least one label
    pos_weight_power: float = 0.5  # pos_weight = (neg/pos) ** power, capped
    pos_weight_cap: float = 30.0
    max_minutes: float | None = None  # wall-clock budget for training; epochs are cut to fit
    seed: int = 42

    def as_dict(self) -> dict:
        return asdict(self)


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (sorted with a little noise), in shuffled order."""
    noisy = np.asarray(lengths, dtype=float) + rng.uniform(0, 3, len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    inp = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        inp[r, :len(x)] = torch.tensor(x, dtype=torch.long)
        mask[r, :len(x)] = 1
    return inp, mask


def pos_weights(Y: np.ndarray, power: float, cap: float) -> torch.Tensor:
    pos = Y.sum(0).astype(float)
    neg = len(Y) - pos
    w = np.where(pos > 0, (neg / np.maximum(pos, 1)) ** power, 1.0)
    return torch.tensor(np.clip(w, 1.0, cap), dtype=torch.float32)


def ordinal_targets(n_classes: int, smoothing: float) -> torch.Tensor:
    """n x n soft targets: row k keeps 1 - smoothing on class k, the rest shared by its
    neighbours k-1 and k+1 (all of it on the one neighbour at either end of the scale)."""
    t = torch.eye(n_classes)
    if smoothing <= 0 or n_classes < 2:
        return t
    for k in range(n_classes):
        nb = [j for j in (k - 1, k + 1) if 0 <= j < n_classes]
        t[k, k] = 1.0 - smoothing
        for j in nb:
            t[k, j] = smoothing / len(nb)
    return t


def sentiment_loss(logits: torch.Tensor, target: torch.Tensor, soft: torch.Tensor) -> torch.Tensor | None:
    """Mean soft-target CE over rows with a sentiment (target >= 0); None when there is none."""
    keep = target >= 0
    if not bool(keep.any()):
        return None
    logp = torch.log_softmax(logits[keep], dim=-1)
    return -(soft[target[keep]] * logp).sum(-1).mean()


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(  # noqa: PLR0915 (one training loop, read top to bottom)
        model: EncoderClassifier, ids: list[list[int]], Y: np.ndarray, sentiment: np.ndarray,
        cfg: TrainConfig, pad_id: int, on_step: Callable[[int, int, float], None] | None = None,
        max_steps: int | None = None, on_epoch: Callable[[int], None] | None = None,
        multilabel: bool = True) -> dict:
    """Train in place. on_step(step, total_steps, loss) after each step; on_epoch(epoch) after each
    epoch (e.g. a validation check; the model is put back in training mode after it).
    multilabel False: Y has one 1 a labelled row, the label loss is softmax cross-entropy.
    Returns a summary (losses, time, epochs)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = device()
    model.to(dev).train()
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": cfg.encoder_lr},
                             {"params": head_params, "lr": cfg.head_lr}], weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    plan = {"epochs": cfg.epochs, "total": steps_per_epoch * cfg.epochs}
    if max_steps is not None:
        plan["total"] = min(plan["total"], max_steps)

    def lr_lambda(step: int) -> float:
        warm = max(1, int(cfg.warmup * plan["total"]))
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (plan["total"] - step) / max(1, plan["total"] - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    labelled = Y.sum(1) > 0 if cfg.labelled_rows_only else np.ones(len(Y), bool)
    pw = pos_weights(Y[labelled] if labelled.any() else Y, cfg.pos_weight_power, cfg.pos_weight_cap)
    bce = nn.BCEWithLogitsLoss(pos_weight=pw.to(dev), reduction="none")
    ce = nn.CrossEntropyLoss()
    soft = ordinal_targets(model.sentiment_head.out_features, cfg.sentiment_smoothing).to(dev)
    Yt = torch.tensor(Y, dtype=torch.float32)
    Lt = torch.tensor(labelled, dtype=torch.bool)
    St = torch.tensor(sentiment, dtype=torch.long)
    lengths = [len(x) for x in ids]
    losses: list[float] = []
    epoch_losses: list[float] = []
    start = time.monotonic()
    step = 0
    epoch = 0
    stopped = None
    while epoch < plan["epochs"] and step < plan["total"]:
        running, count = 0.0, 0
        for b in length_batches(lengths, cfg.batch_size, rng):
            if step >= plan["total"]:
                break
            inp, mask = collate([ids[i] for i in b], pad_id)
            label_logits, sent_logits = model(inp.to(dev), mask.to(dev))
            lb = Lt[b].to(dev)
            if not bool(lb.any()):
                loss = label_logits.sum() * 0
            elif multilabel:
                loss = bce(label_logits[lb], Yt[b].to(dev)[lb]).mean()
            else:
                loss = ce(label_logits[lb], Yt[b].to(dev)[lb].argmax(1))
            s_loss = sentiment_loss(sent_logits, St[b].to(dev), soft)
            if s_loss is not None:
                loss = loss + cfg.sentiment_weight * s_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_value = loss.item()
            losses.append(loss_value)
            running += loss_value
            count += 1
            if on_step:
                on_step(step, plan["total"], loss_value)
        epoch += 1
        epoch_losses.append(running / max(count, 1))
        if on_epoch:
            on_epoch(epoch)
            model.train()
        elapsed = time.monotonic() - start
        if cfg.max_minutes and epoch < plan["epochs"]:
            per_epoch = elapsed / epoch
            fits = int((cfg.max_minutes * 60) // per_epoch)
            if fits < plan["epochs"]:  # re-plan: fewer epochs, schedule decays to zero by then
                plan["epochs"] = max(epoch, fits)
                plan["total"] = min(plan["total"], steps_per_epoch * plan["epochs"])
                stopped = f"time budget {cfg.max_minutes} min: {plan['epochs']} of {cfg.epochs} epochs"
    model.eval()
    return {"steps": step, "epochs_run": epoch, "epoch_losses": epoch_losses, "losses": losses,
            "seconds": round(time.monotonic() - start, 1), "budget_note": stopped, "device": str(dev)}


@torch.no_grad()
def predict(model: EncoderClassifier, ids: list[list[int]], pad_id: int, batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid label probabilities, softmax sentiment probabilities), in input order."""
    dev = device()
    model.to(dev).eval()
    n_l = model.label_head.out_features
    n_s = model.sentiment_head.out_features
    lab = np.zeros((len(ids), n_l), np.float32)
    sen = np.zeros((len(ids), n_s), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for i in range(0, len(order), batch_size):
        b = order[i:i + batch_size]
        inp, mask = collate([ids[j] for j in b], pad_id)
        ll, sl = model(inp.to(dev), mask.to(dev))
        lab[b] = torch.sigmoid(ll).float().cpu().numpy()
        sen[b] = torch.softmax(sl, -1).float().cpu().numpy()
    return lab, sen
