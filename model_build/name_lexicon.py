"""Write the first-name lexicon that redaction reads (twolane/summaries/first_names.txt).

The names are Faker's (MIT; pinned in pyproject's [build] extra) curated first-name lists of the
locales whose names NHS staff and patients most often carry: English-speaking ones (en_GB, en_IE,
en_US, en_NZ, en_IN, en_NG, en_PK) and European ones (fr_FR, de_DE, it_IT, es_ES, pl_PL, nl_NL,
pt_PT): about 5,300 names. Faker's large `en` list is left out on purpose: it holds historical
census spellings that are ordinary words ("Ward", "Doctor", "Less", "Pleasant"), which would
redact NHS comments' own words. The runtime reads the text file, so neither Lambda nor the
container installs Faker.

Run: python -m model_build.name_lexicon   (rewrites the file; the test checks it is current)
"""

from __future__ import annotations

import importlib

from twolane.summaries.redact import LEXICON

LOCALES = ("en_GB", "en_IE", "en_US", "en_NZ", "en_IN", "en_NG", "en_PK",
           "fr_FR", "de_DE", "it_IT", "es_ES", "pl_PL", "nl_NL", "pt_PT")
FIELDS = ("first_names", "first_names_male", "first_names_female")


def first_names(locales: tuple[str, ...] = LOCALES) -> list[str]:
    """Faker's first names of `locales`, alphabetic ones only (a list may hold a spelling with a
    space or a dot), sorted and unique. Raises ImportError without Faker."""
    names: set[str] = set()
    for loc in locales:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for field in FIELDS:
            names.update(n for n in getattr(provider, field, ()) if n.isalpha() and n[0].isupper())
    return sorted(names)


def lexicon_text() -> str:
    """The lexicon file's text: a header line, then one name a line."""
    return "# first names: Faker " + importlib.import_module("faker").VERSION + " " + " ".join(LOCALES) \
        + " (model_build/name_lexicon.py)\n" + "\n".join(first_names()) + "\n"


def main() -> None:
    LEXICON.write_text(lexicon_text(), encoding="utf-8")
    print(f"{LEXICON}: {len(first_names())} names")


if __name__ == "__main__":
    main()
