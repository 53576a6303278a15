"""Batch-lane transformer build: the torch model, training, ONNX export and gates.

Build-time only (imports torch/transformers). Serving uses `twolane.predictors.batch`.
"""
