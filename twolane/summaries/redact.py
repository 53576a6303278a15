"""Personal identifiers out of comment text, before any text reaches the LLM and in every quote.

Each identifier is replaced by a bracketed tag:

    e-mail addresses                      -> [email]
    UK phone numbers (0..., +44 ...)      -> [phone]
    NHS numbers (10 digits, 3-3-4)        -> [nhs number]
    UK postcodes (SW1A 1AA, M1 1AE)       -> [postcode]
    a name after a title (Dr, Nurse, Mr,  -> the title kept, the name [name]
    Mrs, Ms, Miss, Sister, Matron, ...)      ("Dr Patel" -> "Dr [name]")

Not caught: names without a title ("Sarah on reception"), addresses without a postcode, dates of
birth. Tested on a planted set (tests/test_summaries_units.py).
"""

from __future__ import annotations

import re

TAGS = ("[email]", "[phone]", "[nhs number]", "[postcode]", "[name]")

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A run of digits with spaces, dashes, dots or brackets between them; classified by its digits.
NUMBER_RUN = re.compile(r"(?<![\w+])(\+?\(?\d[\d\s().-]{7,}\d)(?![\w])")
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[ABD-HJLNP-UW-Z]{2}\b", re.IGNORECASE)
TITLES = ("Dr", "Doctor", "Nurse", "Mr", "Mrs", "Ms", "Miss", "Mx", "Sister", "Matron", "Prof",
          "Professor", "Sr", "Staff Nurse", "Midwife", "Consultant", "Surgeon")
# Title (any case) + one or two capitalised words: the words are the name.
NAME = re.compile(r"\b(?P<title>(?i:" + "|".join(sorted(TITLES, key=len, reverse=True))
                  + r"))\.?\s+(?P<name>[A-Z][a-z'’-]+(?:[\s-][A-Z][a-z'’-]+)?)\b")


def _number(match: re.Match[str]) -> str:
    run = match.group(1)
    digits = re.sub(r"\D", "", run)
    if run.startswith("+44") or (digits.startswith("44") and run.startswith("+")):
        return "[phone]" if len(digits) in (11, 12) else run
    if digits.startswith("0") and len(digits) in (10, 11):
        return "[phone]"
    if len(digits) == 10:
        return "[nhs number]"
    return run


def redact(text: str) -> str:
    """`text` with every identifier above replaced by its tag (idempotent: tags are not matched)."""
    text = EMAIL.sub("[email]", text)
    text = NUMBER_RUN.sub(_number, text)
    text = POSTCODE.sub("[postcode]", text)
    return NAME.sub(lambda m: f"{m.group('title')} [name]", text)


def leaks(text: str) -> int:
    """How many identifiers `redact` would still change in `text` (0 for clean output)."""
    n = len(EMAIL.findall(text)) + len(POSTCODE.findall(text)) + len(NAME.findall(text))
    n += sum(1 for m in NUMBER_RUN.finditer(text) if _number(m) != m.group(1))
    return n
