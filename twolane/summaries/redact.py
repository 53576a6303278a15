"""Personal identifiers out of comment text, before any text reaches the LLM and in every quote.

Each identifier is replaced by a bracketed tag:

    e-mail addresses                      -> [email]
    UK phone numbers (0..., +44 ...)      -> [phone]
    NHS numbers (10 digits, 3-3-4)        -> [nhs number]
    UK postcodes (SW1A 1AA, M1 1AE)       -> [postcode]
    a name after a title (Dr, Nurse, Mr,  -> the title kept, the name [name]
    Mrs, Ms, Miss, Sister, Matron, ...)      ("Dr Patel" -> "Dr [name]")
    a full name without a title: a known  -> [name]
    first name and one or two capitalised    ("my mum Margaret Thornbury" -> "my mum [name]",
    words that are not a place's or a         "Sarah Jones on reception" -> "[name] on reception";
    service's ("Ward", "House", "Road")       "Cherry Ward", "Hope Centre" are kept)

The first names are first_names.txt: Faker's curated lists of English-speaking and European
locales (about 5,300; written by model_build/name_lexicon.py). On the 7,908 NHS comments of
data/nhs-patient-feedback/ the full-name rule changes a handful of non-names (hospital names
after a person: "James Cook", "Freeman"...); bench/identifiers.py counts what it catches and misses.

Not caught: a first name alone ("Sarah on reception"), a name whose first name is not in the list
or written in lower case, addresses without a postcode, dates of birth.
Tested on a planted set (tests/functional/test_summaries_units.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

TAGS = ("[email]", "[phone]", "[nhs number]", "[postcode]", "[name]")

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A run of digits with spaces, dashes, dots or brackets between them; classified by its digits.
NUMBER_RUN = re.compile(r"(?<![\w+])(\+?\(?\d[\d\s().-]{7,}\d)(?![\w])")
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[ABD-HJLNP-UW-Z]{2}\b", re.IGNORECASE)
# Titles: abbreviations may end with a dot ("dr. Okafor"), words may not ("nurse. She said").
ABBREVIATED_TITLES = ("Dr", "Mr", "Mrs", "Ms", "Mx", "Prof", "Sr")
WORD_TITLES = ("Doctor", "Nurse", "Miss", "Sister", "Matron", "Professor", "Staff Nurse", "Midwife",
               "Consultant", "Surgeon")
TITLES = ABBREVIATED_TITLES + WORD_TITLES
# Title (any case) + one or two capitalised words on the same line: the words are the name.
NAME = re.compile(r"\b(?P<title>(?i:(?:" + "|".join(ABBREVIATED_TITLES) + r")\.?|"
                  + "|".join(sorted(WORD_TITLES, key=len, reverse=True))
                  + r"))[ \t]+(?P<name>[A-Z][a-z'’-]+(?:[ \t-][A-Z][a-z'’-]+)?)\b")

LEXICON = Path(__file__).with_name("first_names.txt")
# Capitalised words that are not part of a person's name: after a first name they make it a
# place's, a service's or a phrase's ("Cherry Ward", "Park House", "Hope Centre"); after a title
# they start a sentence ("dr. However ...").
COMMON_WORDS = frozenset("""
    Ward Wards House Road Lane Street Avenue Close Drive Way Place Square Court Crescent Terrace
    Grove Gardens Park Hill View Green Row Walk Mews Estate Lodge Hall Castle Wing Suite Block
    Building Centre Center Hospital Hospice Infirmary Clinic Surgery Practice Unit Department
    Community Health Medical Trust Team Service Services Home Nursing Memorial University College
    School Station Council Tax North South East West General Royal Day Night Week Month
    And The Of On In At To For With From By Was Is Are Were Be Been But Or If So As It Its
    Not No Yes Very Too Also Thank Thanks Thankyou Please Dear Hi Hello However There Then This
    That These Those What When Where Why Who How Just Every Everyone Everything All Some Any
    Did Do Does Had Has Have He She They We You My Our Your His Her Their After Before Because
    Would Could Should Can Will Good Great Excellent Nothing Nobody
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday
    January February March April May June July August September October November December
""".split())
# Letters of names: A-Z and the Latin-1 and Latin Extended-A ones ("Zoé", "Łukasz", "Şahin").
UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
LOWER = "a-zß-öø-ÿāăąćĉċčďđēĕėęěĝğġģĥħĩīĭįıĵķĺļľŀłńņňŋōŏőœŕŗřśŝşšţťŧũūŭůűųŵŷźżž"
WORD = f"[{UPPER}][{LOWER}]+"
SURNAME = f"(?:O['’]|Mc|Mac)?{WORD}(?:-{WORD})?"
# A capitalised word and one or two more (not followed by an apostrophe: "Ward I've").
FULL_NAME = re.compile(rf"(?<![\w'’])(?P<first>{WORD})(?P<rest>(?:[ \t]+{SURNAME}){{1,2}})(?![\w'’])")


@functools.cache
def first_names() -> frozenset[str]:
    """The first-name lexicon (first_names.txt: one name a line, '#' lines are comments)."""
    lines = LEXICON.read_text(encoding="utf-8").splitlines()
    return frozenset(x.strip() for x in lines if x.strip() and not x.startswith("#"))


def _full_name(match: re.Match[str]) -> str:
    """`match` with the name redacted: the first name and the surname words up to the first word
    in COMMON_WORDS; unchanged when the first word is not a known first name or no surname word
    is left."""
    if match.group("first") not in first_names():
        return match.group(0)
    words = match.group("rest").split()
    n = next((i for i, w in enumerate(words) if w in COMMON_WORDS), len(words))
    if n == 0:
        return match.group(0)
    return "[name]" + "".join(" " + w for w in words[n:])


def _titled_name(match: re.Match[str]) -> str:
    """The title kept and the name [name]; unchanged when the word after the title is common
    ("dr. However")."""
    if match.group("name").split()[0].split("-")[0] in COMMON_WORDS:
        return match.group(0)
    return f"{match.group('title')} [name]"


def _number(match: re.Match[str]) -> str:
    run = match.group(1)
    digits = re.sub(r"\D", "", run.replace("(0)", ""))  # "+44(0)121 ...": the 0 is not dialled
    if run.startswith("+44"):
        return "[phone]" if len(digits) in (11, 12) else run
    if digits.startswith("0") and len(digits) in (10, 11):
        return "[phone]"
    if len(digits) == 10:
        return "[nhs number]"
    return run


def _rules() -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    """The rules in the order `redact` applies them: (pattern, replacement of a match)."""
    return [(EMAIL, lambda m: "[email]"), (NUMBER_RUN, _number), (POSTCODE, lambda m: "[postcode]"),
            (NAME, _titled_name), (FULL_NAME, _full_name)]


def found(text: str) -> list[str]:
    """The spans of `text` that `redact` replaces, in the order it replaces them (each rule runs on
    the text the rules before it left)."""
    spans: list[str] = []
    for pattern, replace in _rules():
        def keep(m: re.Match[str], replace: Callable[[re.Match[str]], str] = replace) -> str:
            out = replace(m)
            if out != m.group(0):
                spans.append(m.group(0))
            return out
        text = pattern.sub(keep, text)
    return spans


def redact(text: str) -> str:
    """`text` with every identifier above replaced by its tag (idempotent: tags are not matched)."""
    for pattern, replace in _rules():
        text = pattern.sub(replace, text)
    return text


def leaks(text: str) -> int:
    """How many identifiers `redact` would still change in `text` (0 for clean output)."""
    return len(found(text))
