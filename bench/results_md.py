"""Each benchmark owns one section of bench/RESULTS.md, between its own start and end markers."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(start: str, end: str, block: str, path: Path = RESULTS_MD) -> None:
    """Replace the block from `start` to `end` (markers included in `block`), or append it."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
