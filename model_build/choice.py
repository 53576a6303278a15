"""The record of the instant build's choice between its sentiment heads (model_build.choose makes
it; the build output, the manifest and the build report read it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TUNED, PLAIN = "tuned", "plain"


@dataclass
class Choice:
    """Which head won and by how much: `cv_accuracy` per candidate (out-of-fold, training
    rows), `margin` = the winner's minus the other's (accuracy, 0..1), `rows` scored;
    `test_accuracy` per candidate on the build's test split (report only, never read by the
    choice)."""

    chosen: str
    cv_accuracy: dict[str, float]
    margin: float
    rows: int
    folds: int
    test_accuracy: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for the build output: the winner, both CV accuracies, the test split's."""
        other = PLAIN if self.chosen == TUNED else TUNED
        out = (f"sentiment head: {self.chosen} (cross-validated accuracy on {self.rows} training "
               f"rows {self.cv_accuracy[self.chosen]:.3f} vs {other} {self.cv_accuracy[other]:.3f}, "
               f"{self.margin * 100:+.1f} pt)")
        if self.test_accuracy:
            out += (f"; test split {self.test_accuracy[self.chosen]:.3f} vs "
                    f"{self.test_accuracy[other]:.3f}")
        return out
