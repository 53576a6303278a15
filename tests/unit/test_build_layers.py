"""The build's shape (model_build/): no module over MAX_LINES lines, and no import of a
model_build module inside a function, where it would hide an import loop from the reader (the
layers themselves are import-linter's contract "Layers inside the build", pyproject.toml).
Function-level imports of heavy optional libraries (torch, sklearn, ...) stay allowed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "model_build"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _nested_build_imports(path: Path) -> list[str]:
    """'line: module' for each import of a model_build module below the module's top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names = [a.name for a in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                names = [inner.module or ""] if inner.level == 0 else ["model_build (relative)"]
            else:
                continue
            found += [f"{inner.lineno}: {n}" for n in names if n.split(".")[0] == "model_build"]
    return sorted(set(found))


def test_no_build_module_is_imported_inside_a_function() -> None:
    hidden = {str(p.relative_to(ROOT.parent)): _nested_build_imports(p) for p in _modules()}
    assert {k: v for k, v in hidden.items() if v} == {}


def test_no_build_module_is_over_the_line_limit() -> None:
    sizes = {str(p.relative_to(ROOT.parent)): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    assert {k: n for k, n in sizes.items() if n > MAX_LINES} == {}
