"""`twolane drift FILE --bundle DIR [--json]`: does a file of comments look like the bundle's
training data? (twolane.drift). Reads any format the drop folder reads. Exit 0 whatever the
verdict; 2 with a one-line reason when the file or the bundle cannot be used."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from twolane.bundle import BundleError
from twolane.drift import DriftError, DriftReport, checker
from twolane.dropfolder.formats import FormatError, family_of, read_items
from twolane.predictors.instant import InstantPredictor

UNREADABLE = 2  # exit status: the file or the bundle cannot be used
WIDTH = 120  # characters, when the report goes to a file or pipe (a terminal uses its own)


class Unusable(Exception):
    """One line saying why the file or bundle cannot be compared (no path, no comment text)."""


def report_of(file: Path, bundle: Path) -> DriftReport:
    """The drift report of a file's comments against an instant bundle's reference.

    Raises Unusable (a one-line reason) for an unreadable file or a bundle without a reference."""
    try:
        items = read_items(Path(file).read_bytes(), family_of(Path(file).name))
    except FormatError as exc:
        raise Unusable(f"cannot read the file: {exc}") from None
    except OSError as exc:
        raise Unusable(f"cannot read the file ({type(exc).__name__})") from None
    except UnicodeError:
        raise Unusable("cannot read the file: not valid text") from None
    try:
        predictor = InstantPredictor.from_bundle(bundle)
        check = checker(predictor.bundle_dir)
    except (BundleError, DriftError, OSError) as exc:
        raise Unusable(f"cannot use the bundle: {exc}") from None
    return check.check_items(predictor, items)


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if x >= 10 ** -digits else f"{x:.1e}"


def table(report: DriftReport) -> Table:
    """The report as a rich table: one row per signal, then the overall verdict in the title."""
    verdict = "[red]DRIFTED[/]" if report.drifted else "[green]not drifted[/]"
    t = Table(title=f"{report.comments} comments: {verdict}  (drifted when Holm p < "
                    f"{report.alpha} and PSI >= {report.min_psi})")
    for col in ("signal", "n", "ref n", "PSI", "p", "p (Holm)", "threshold", "verdict"):
        t.add_column(col, justify="right" if col in ("n", "ref n", "PSI", "p", "p (Holm)") else "left",
                     no_wrap=col in ("signal", "threshold"))
    for name, r in report.signals.items():
        v = r.note or ("[red]drifted[/]" if r.drifted else "[green]ok[/]")
        t.add_row(name, str(r.n), str(r.reference_n), _num(r.psi), _num(r.p_value),
                  _num(r.p_adjusted), f"p<{report.alpha} & PSI>={report.min_psi}", v)
    return t


def run(file: Path, bundle: Path, as_json: bool) -> int:
    """Print the report (a table, or JSON with --json); returns the exit status."""
    out = Console() if sys.stdout.isatty() else Console(width=WIDTH)
    try:
        report = report_of(file, bundle)
    except Unusable as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)  # one line, never wrapped
        return UNREADABLE
    if as_json:
        print(report.model_dump_json(indent=1))
    else:
        out.print(table(report))
    return 0
