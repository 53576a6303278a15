"""Planted identifiers, and what redaction catches and misses of them, by kind.

    .venv/bin/python -m bench.identifiers [--per-kind 30]

`planted(per_kind, seed)` makes sentences that each hold one identifier, to append to real
comments (bench/llm.py plants them into its slice):

    phone        UK numbers as Faker's en_GB writes them ("0121 496 0219", "+44118 496 0876",
                 "(020)74960382", ...)
    email        Faker e-mail addresses
    nhs number   10 digits with a valid modulus-11 check digit, written 3-3-4, with dashes or run
                 together
    postcode     Faker en_GB postcodes, in upper and in lower case
    name         full names without a title ("my mum Margaret Thornbury"): first and last names
                 from Faker's en_GB lists (its first names are in the redaction lexicon, which is
                 made from Faker: this measures the rule, surnames included)
    name, other  the same from locales the lexicon was not made from (OTHER_LOCALES: Czech,
                 Romanian, Swedish, Hungarian, Croatian, Danish, Finnish, Turkish): this measures
                 the lexicon's reach

Deterministic: the same arguments give the same sentences. Faker (MIT) is in pyproject's [build]
extra. The report (bench/results/identifiers.json, bench/RESULTS.md section "identifiers") also
counts what redaction changes in the 7,908 real NHS comments that are not identifiers (false
positives), read by hand from the list it prints.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.results_md import write_section
from twolane.summaries.redact import COMMON_WORDS, FULL_NAME, found, redact

RESULTS = Path(__file__).resolve().parent / "results" / "identifiers.json"
NHS_CSV = Path(__file__).resolve().parent.parent / "data" / "nhs-patient-feedback" / "v6framework_230831.csv"
# Locales whose names the lexicon was not made from (model_build/name_lexicon.py LOCALES).
OTHER_LOCALES = ("cs_CZ", "ro_RO", "sv_SE", "hu_HU", "hr_HR", "da_DK", "fi_FI", "tr_TR")
KINDS = ("phone", "email", "nhs number", "postcode", "name", "name, other")
# Sentences around each kind: {} is the identifier.
TEMPLATES = {
    "phone": (" Please call me on {} about it.", " My daughter's number is {}.", " Ring {} if needed."),
    "email": (" Email me at {} please.", " My email is {}.", " Send the letter to {} instead."),
    "nhs number": (" My NHS number is {}.", " NHS no {} was wrong on the letter.", " They lost {} again."),
    "postcode": (" I live at {} and the bus never comes.", " Transport to {} took hours.",
                 " My postcode {} was wrong."),
    "name": (" my mum {} was looked after so well.", " {} on reception was rude.",
             " Thank you to {} for everything.", " My husband {} waited four hours."),
}


@dataclass(frozen=True)
class Planted:
    kind: str  # one of KINDS
    secret: str  # the identifier, as written in `text`
    text: str  # a sentence holding it, starting with a space (appended to a comment)


def nhs_number(rng: random.Random) -> str:
    """A 10-digit NHS number with a valid modulus-11 check digit (never 10)."""
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def planted(per_kind: int = 30, seed: int = 0) -> list[Planted]:
    """`per_kind` identifiers of each of KINDS (6 * per_kind in all), each in a sentence.
    Raises ImportError without Faker."""
    from faker import Faker

    rng = random.Random(seed)
    gb = Faker("en_GB")
    gb.seed_instance(seed)
    others = [Faker(loc) for loc in OTHER_LOCALES]
    for f in others:
        f.seed_instance(seed)
    out: list[Planted] = []
    for i in range(per_kind):
        n = nhs_number(rng)
        nhs = (f"{n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]}-{n[3:6]}-{n[6:]}", n)[i % 3]
        postcode = gb.postcode()
        other = others[i % len(others)]
        secrets = {
            "phone": gb.phone_number(),
            "email": gb.email(),
            "nhs number": nhs,
            "postcode": postcode.lower() if i % 4 == 3 else postcode,
            "name": f"{gb.first_name()} {gb.last_name()}",
            "name, other": f"{other.first_name()} {other.last_name()}",
        }
        for kind, secret in secrets.items():
            forms = TEMPLATES["name" if kind.startswith("name") else kind]
            out.append(Planted(kind, secret, forms[i % len(forms)].format(secret)))
    return out


def caught(p: Planted) -> bool:
    """Redaction removed every word of the identifier (digits: every run of digits)."""
    out = redact(p.text)
    return p.secret not in out and not any(len(part) > 2 and part in out for part in p.secret.split())


def false_positives(path: Path = NHS_CSV) -> tuple[int, int, list[str]]:
    """(comments, comments redaction changes, the spans it replaces) over the real NHS comments."""
    with path.open(encoding="utf-8", newline="") as f:
        texts = [row["FFT answer"] for row in csv.DictReader(f)]
    spans = [span for t in texts for span in found(t)]
    return len(texts), sum(bool(found(t)) for t in texts), spans


def without_lexicon(path: Path = NHS_CSV) -> Counter[str]:
    """What the full-name rule would redact in the NHS comments with any capitalised word as a
    first name (no lexicon): the spans, counted."""
    with path.open(encoding="utf-8", newline="") as f:
        texts = [row["FFT answer"] for row in csv.DictReader(f)]
    return Counter(m.group(0) for t in texts for m in FULL_NAME.finditer(t)
                   if m.group("first") not in COMMON_WORDS and m.group("rest").split()[0] not in COMMON_WORDS)


def run(per_kind: int, seed: int = 0) -> dict[str, Any]:
    """Caught and missed by kind, with the missed ones, and the false positives on NHS comments."""
    items = planted(per_kind, seed)
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        ps = [p for p in items if p.kind == kind]
        missed = [p.secret for p in ps if not caught(p)]
        by_kind[kind] = {"planted": len(ps), "caught": len(ps) - len(missed), "missed": missed}
    n, changed, spans = false_positives()
    return {"planted": len(items), "seed": seed, "by_kind": by_kind,
            "nhs_comments": n, "nhs_comments_changed": changed,
            "nhs_changed_spans": dict(Counter(spans).most_common()),
            "nhs_spans_without_lexicon": dict(without_lexicon().most_common()),
            "examples": [asdict(p) | {"redacted": redact(p.text)} for p in items[: len(KINDS)]]}


def write_md(r: dict[str, Any]) -> None:
    start, end = "<!-- identifiers:start -->", "<!-- identifiers:end -->"
    rows = "\n".join(f"| {k} | {v['planted']} | {v['caught']} | {', '.join(v['missed'][:6]) or '-'} |"
                     for k, v in r["by_kind"].items())
    total = sum(v["caught"] for v in r["by_kind"].values())
    spans = ", ".join(f"{s!r} x{c}" for s, c in r["nhs_changed_spans"].items())
    loose = ", ".join(f"{s!r}" for s in list(r["nhs_spans_without_lexicon"])[:8])
    block = f"""{start}
## Identifiers: what redaction catches (bench/identifiers.py)

{r['planted']} planted identifiers (Faker, seed {r['seed']}), each in a sentence; caught = every
word of it gone after `twolane.summaries.redact.redact`. {total} of {r['planted']} caught.

| kind | planted | caught | missed (first few) |
|---|---|---|---|
{rows}

What redaction changes in the {r['nhs_comments']:,} real NHS comments (data/nhs-patient-feedback/, whose
publishers already replaced most names by "Name Redacted"): {r['nhs_comments_changed']} comments, these spans:
{spans or 'none'}. A span that is not a person's name is a false positive ("James Cook" is a
hospital). Without the first-name lexicon (any capitalised word as a first name) the rule would
redact {sum(r['nhs_spans_without_lexicon'].values())} spans, most of them not names: {loose}, ...
{end}"""
    write_section(start, end, block)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = run(a.per_kind, a.seed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    write_md(r)
    print(json.dumps({k: {"planted": v["planted"], "caught": v["caught"]} for k, v in r["by_kind"].items()}))
    print("NHS comments changed:", r["nhs_comments_changed"], r["nhs_changed_spans"])


if __name__ == "__main__":
    main()
