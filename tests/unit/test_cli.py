"""The `twolane` command's own package (twolane_cli): the data-spec flags are defined once and
both builds take them; `twolane up` hands the emulator the build it may not import."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from model_build.dataspec import SpecArgs
from twolane_cli.app import app
from twolane_cli.spec_flags import SPEC_FLAGS, data_spec_flags


def test_the_flags_are_the_spec_fields() -> None:
    assert list(SPEC_FLAGS) == [f.name for f in fields(SpecArgs)]


@pytest.mark.parametrize("build", ["instant", "batch"])
def test_both_builds_take_every_spec_flag(build: str) -> None:
    out = CliRunner().invoke(app, ["build", build, "--help"], env={"COLUMNS": "200"}).output
    for name in SPEC_FLAGS:
        assert "--" + name.replace("_", "-") in out, (build, name)


def test_the_flags_reach_the_command_as_one_spec() -> None:
    seen: list[tuple[Path | None, SpecArgs]] = []
    demo = typer.Typer()

    @demo.command()
    @data_spec_flags
    def build(data: Path | None = typer.Option(None, "--data"), *, spec: SpecArgs) -> None:
        seen.append((data, spec))

    run = CliRunner().invoke(demo, ["--data", "x.csv", "--text-column", "body", "--label-columns", "a, b,c",
                                    "--sentiment-order", "low,high", "--context-column", "ward"])
    assert run.exit_code == 0, run.output
    assert seen == [(Path("x.csv"), SpecArgs(text_column="body", label_columns=("a", "b", "c"),
                                             sentiment_order=("low", "high"), context_column="ward"))]
    seen.clear()
    assert CliRunner().invoke(demo, []).exit_code == 0 and seen[0][1].empty  # none: the NHS preset


def test_a_command_without_spec_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="spec"):
        data_spec_flags(lambda data=None: None)


def test_up_hands_the_stack_the_instant_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator never imports the build: `twolane up` passes it the build to run when there
    is no instant bundle yet (local_stack.stack.ensure_instant_bundle)."""
    import local_stack.stack
    from twolane.settings import get_settings

    seen: list[object] = []
    monkeypatch.setattr(local_stack.stack, "up", lambda **kw: seen.append(kw["build_instant"]))
    monkeypatch.setenv("TWOLANE_BATCH_ENABLED", "1")
    try:
        assert CliRunner().invoke(app, ["up", "--no-batch"]).exit_code == 0
    finally:
        get_settings.cache_clear()
    assert len(seen) == 1 and callable(seen[0]) and seen[0].__module__ == "twolane_cli.app"


def test_no_instant_bundle_and_nothing_to_build_it_with(tmp_path: Path) -> None:
    from local_stack.stack import ensure_instant_bundle
    from twolane.bundle import BundleError
    from twolane.settings import Settings

    settings = Settings(bundles=tmp_path)
    with pytest.raises(BundleError):
        ensure_instant_bundle(settings)
    built: list[Path] = []
    with pytest.raises(BundleError):  # the build ran (here it writes nothing) and is asked once
        ensure_instant_bundle(settings, built.append)
    assert built == [tmp_path]
