"""`twolane up --data FILE [data-spec flags]`: a team's own labelled file, served end to end
(the CLI prepares it, then starts `local_stack.stack.up` on it).

The file is read by the data spec (model_build.dataspec; a DataError, one line, when it cannot
be learned from). Its bundles live apart from the NHS ones, in a folder of their own under the
bundles root named by the file and its content (`bundles_root`: bundles/data/<stem>-<hash>/), so
the NHS `twolane up` and every other file keep theirs. Then:

1. the instant bundle of that spec is built there if missing (minutes, in this process, with
   the build's progress and report), and served at once;
2. the stack starts on that folder (TWOLANE_BUNDLES), and its batch lane builds the spec's batch
   bundle in the background (`twolane build batch --data FILE <the same flags>`, progress in
   the build log), as it builds the NHS one for a plain `twolane up`;
3. the batch lane is declared to answer in the instant bundle's taxonomy
   (TWOLANE_BATCH_TAXONOMY, as infra declares it on AWS): the batch bundle being built is of the
   same file and spec, so until it is there jobs wait (503 "still building", drop-folder files
   deferred) instead of being refused; once it is, jobs, `"lane": "auto"` (its cascade rule),
   the drop folder and the page answer in the file's labels.

Without `--data` nothing here runs: `twolane up` is the NHS stack as before.
"""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

from model_build.dataspec import SpecArgs
from twolane.settings import Settings, get_settings

# what --data overrides: the bundles it serves are the file's own
PINNED = ("TWOLANE_INSTANT_BUNDLE", "TWOLANE_BATCH_BUNDLE", "TWOLANE_CASCADE_RULE")


def bundles_root(settings: Settings, data: Path) -> Path:
    """The file's own bundles root: <bundles>/data/<file stem>-<first 10 of its fingerprint>/
    (a new file content, a new folder)."""
    from model_build.data import fingerprint_file

    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", data.stem).strip("-.")[:40] or "data"
    return Path(settings.bundles) / "data" / f"{stem}-{fingerprint_file(data)[:10]}"


def spec_flags(spec: SpecArgs) -> list[str]:
    """The `twolane build` flags that give this spec (lists comma-joined): what the background
    batch build is started with."""
    out: list[str] = []
    for f in fields(SpecArgs):
        value = getattr(spec, f.name)
        if value is None:
            continue
        out += ["--" + f.name.replace("_", "-"), ",".join(value) if isinstance(value, tuple) else str(value)]
    return out


def prepare(data: Path, spec: SpecArgs) -> list[str]:
    """Point this process's settings at the file's own bundles root, build its instant bundle
    there if missing, declare the batch lane's taxonomy; returns the batch build's arguments.

    Raises model_build.data.DataError (one line) for a file the build cannot learn from, and
    model_build.instant.BuildError when the build cannot make a trustworthy bundle."""
    from model_build import dataspec
    from model_build.instant import run
    from twolane.bundle import BundleError, read_manifest, resolve_bundle

    data = Path(data).resolve()
    dataspec.load(data, spec)  # refuse a bad file before anything starts (seconds)
    root = bundles_root(get_settings(), data)
    for name in PINNED:
        os.environ.pop(name, None)
    os.environ["TWOLANE_BUNDLES"] = str(root)
    get_settings.cache_clear()
    try:
        instant = resolve_bundle(root, "instant")
    except BundleError:
        print(f"Building the instant model of {data.name} into {root} (minutes, once; later "
              "starts reuse it)", flush=True)
        instant = run(data=data, out=root, spec=spec)
    os.environ["TWOLANE_BATCH_TAXONOMY"] = read_manifest(instant).taxonomy.model_dump_json()
    get_settings.cache_clear()
    return ["--data", str(data), *spec_flags(spec)]


__all__ = ["bundles_root", "prepare", "spec_flags"]
