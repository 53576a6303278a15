"""The build's refusals: a lane's build cannot produce a trustworthy bundle.

(Data the build cannot learn from is `model_build.data.DataError`: one line naming the column
or value.)"""

from __future__ import annotations


class BuildError(RuntimeError):
    """The instant build cannot produce a trustworthy bundle (e.g. ONNX disagrees with the model)."""


class BatchBuildError(RuntimeError):
    """The batch build cannot produce a trustworthy bundle."""
