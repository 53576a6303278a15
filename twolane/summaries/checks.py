"""What a summary must pass to be printed (`withheld_because`); a summary that fails any check
is withheld, its reasons named, never repaired.

    at most MAX_SENTENCES sentences and MAX_WORDS words, ending a sentence
    no run of REPEAT_RUN words said twice (loops)
    every number one of the theme's counts (its comments, negative ones, a point's)
    not the opposite of its counts: a theme at >= NEGATIVE_AT negative not read as positive, one
        at <= POSITIVE_AT not read as negative (`tone`: the instant lane's sentiment of the
        summary; NHS scale only, a team's own scale has no known negative end)
    >= GROUNDED_SHARE of its content words found in the theme's comments, name or points
        (words compared by a crude stem; a few reporting words are free: "patients", "most")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from twolane.summaries.points import STOP, words

MAX_SENTENCES = 2
MAX_WORDS = 50
REPEAT_RUN = 4
NEGATIVE_AT = 0.6
POSITIVE_AT = 0.1
GROUNDED_SHARE = 0.9
# Words a report uses about comments, not taken from them.
REPORTING = frozenset("""
patient patients people person comment comments commented feedback respondent respondents say
said says saying mention mentioned mentions mentioning report reported reports describe described
express expressed expressing feel felt majority minority several number many most some few other
others overall generally general while whereas however although though others positive negative
mixed praise praised concern concerns concerned experience experiences highlight highlighted
note noted also including include includes especially particularly theme themes point points
""".split())
SENTENCE_END = re.compile(r"[.!?][\"'”’)]*\s*$")
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=\S)")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20,
                "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100}


def stem(word: str) -> str:
    """A crude stem: lower case, apostrophes out, one common suffix off ("waiting" -> "wait")."""
    w = word.lower().replace("'", "").replace("’", "")
    for suffix in ("ingly", "edly", "ing", "ness", "ment", "ies", "ied", "ed", "ly", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def vocabulary(texts: Iterable[str]) -> set[str]:
    """The stems of every word of `texts` (what a summary's content words must be among)."""
    return {stem(w) for t in texts for w in words(t)}


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_SPLIT.split(text.strip()) if s]


def _repeats(tokens: list[str]) -> bool:
    runs = [tuple(tokens[i:i + REPEAT_RUN]) for i in range(len(tokens) - REPEAT_RUN + 1)]
    return len(runs) != len(set(runs))


def withheld_because(text: str, *, counts: set[int], comments: int, negative: int | None,
                     known: set[str], tone: Callable[[str], int | None] | None) -> str | None:
    """Why `text` may not be printed as the summary of a theme of `comments` comments,
    `negative` of them negative (None: no NHS scale), whose counts (comments, negative, each
    point's) are `counts` and whose comments' word stems are `known`; None when it passes.
    `tone(text)`: its sentiment score on the NHS scale (1 very positive .. 5 very negative),
    or None. Several failed checks are named together, "; "-separated."""
    text = " ".join(text.split())
    if not text:
        return "the LLM wrote nothing"
    failed = []
    tokens = words(text)
    if len(sentences(text)) > MAX_SENTENCES:
        failed.append(f"more than {MAX_SENTENCES} sentences")
    if len(text.split()) > MAX_WORDS:
        failed.append(f"more than {MAX_WORDS} words")
    if not SENTENCE_END.search(text):
        failed.append("does not end a sentence")
    if _repeats(tokens):
        failed.append(f"repeats a run of {REPEAT_RUN} words")
    said = {int(n.replace(",", "")) for n in NUMBER.findall(text) if "." not in n}
    said |= {NUMBER_WORDS[w] for w in tokens if w in NUMBER_WORDS and w != "one"}
    if any("." in n for n in NUMBER.findall(text)) or not said <= counts:
        failed.append("a number that is not one of the theme's counts")
    if negative is not None and comments and tone is not None:
        share, score = negative / comments, tone(text)
        if score is not None and share >= NEGATIVE_AT and score <= 2:
            failed.append(f"reads positive while {negative} of {comments} comments are negative")
        elif score is not None and share <= POSITIVE_AT and score >= 4:
            failed.append(f"reads negative while {negative} of {comments} comments are negative")
    content = [w for w in tokens if w not in STOP and w not in NUMBER_WORDS
               and stem(w) not in REPORTING and w not in REPORTING]
    if content:
        found = sum(stem(w) in known for w in content) / len(content)
        if found < GROUNDED_SHARE:
            failed.append(f"words not in the comments ({round(100 * found)} % found, "
                          f"{round(100 * GROUNDED_SHARE)} % needed)")
    return "; ".join(failed) or None
