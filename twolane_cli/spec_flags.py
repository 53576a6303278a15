"""The data-spec flags of `twolane build instant` and `twolane build batch`, defined once.

Each flag is a field of `model_build.dataspec.SpecArgs` (`--id-column` is `id_column`), given as
a string (the comma lists `--label-columns` and `--sentiment-order` are split by
`SpecArgs.from_flags`); none given: the NHS preset, or the defaults. `data_spec_flags` adds them
to a command that takes `spec`, so the flags, their help and their reading live here alone."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer

R = TypeVar("R")

# SpecArgs field -> the flag's help (the flag is `--` + the field with dashes)
SPEC_FLAGS: dict[str, str] = {
    "id_column": "Id column (default: id; row numbers if absent).",
    "text_column": "Comment text column (default: text).",
    "labels_column": "One label a row, or several joined by --label-sep (default: labels).",
    "label_sep": "Separator of several labels in one cell (default ';').",
    "label_columns": "Wide 0/1 label columns, comma-separated: A,B,C.",
    "sentiment_column": "Sentiment column, any classes (default: sentiment where present; none: no sentiment).",
    "sentiment_order": "Sentiment classes in order, comma-separated (needed for words; numbers sort by value).",
    "context_column": "A categorical column that conditions the model (its context; the NHS preset's is "
                      "the question type).",
    "unlabellable": "The label for text that cannot be labelled (default: 'Labelling not possible' where "
                    "the data has it; else none).",
}


def _parameter(field: str, help_text: str) -> inspect.Parameter:
    flag = "--" + field.replace("_", "-")
    return inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                             default=typer.Option(None, flag, help=help_text))


def data_spec_flags(command: Callable[..., R]) -> Callable[..., R]:
    """`command` (which takes a keyword `spec`: a `SpecArgs`) as a typer command taking the
    data-spec flags instead, in place of `spec`; the flags are read into the `SpecArgs` it gets.

    Raises TypeError at decoration when `command` has no `spec` parameter."""
    signature = inspect.signature(command)
    if "spec" not in signature.parameters:
        raise TypeError(f"{command.__name__} takes no `spec`")
    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
            if p.name != "spec"]

    @functools.wraps(command)
    def with_flags(**kwargs: Any) -> R:
        from model_build.dataspec import SpecArgs  # lazy: `twolane --help` stays instant

        flags = {name: kwargs.pop(name) for name in SPEC_FLAGS}
        return command(**kwargs, spec=SpecArgs.from_flags(flags))

    with_flags.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=kept + [_parameter(f, h) for f, h in SPEC_FLAGS.items()])
    # typer reads the hints of `with_flags`: the command's own (strings, resolved in its module:
    # get_type_hints follows __wrapped__), less `spec`, and the flags'
    hints = {k: v for k, v in command.__annotations__.items() if k != "spec"}
    with_flags.__annotations__ = hints | {f: str | None for f in SPEC_FLAGS}
    return with_flags
