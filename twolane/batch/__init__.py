"""Batch lane at serving time: the transformer (ONNX) predictor. No torch, no transformers."""

from twolane.batch.predictor import BatchPredictor

__all__ = ["BatchPredictor"]
