"""The OpenAI chat-completions requests of one theme, and the parse of their answers.

Two short requests per theme, because one request asking for prose and for copied text at once
confuses small models: a summary request, and (when quotes are wanted) a quotes request that
asks for the most telling comments copied word for word, each line starting with the comment's
number. The bodies are what the LLM endpoint's container takes at /invocations (llama.cpp
server, vLLM and LMI accept them): greedy decoding, bounded output. The model sees only redacted
text of the theme's sampled comments, numbered 1..k.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

SUMMARY_TOKENS = 160
TOKENS_PER_QUOTE = 60
MAX_COMMENT_CHARS = 400  # a longer comment is cut in the prompt (quotes come only from what is shown)

SYSTEM = ("You write short, factual summaries of NHS patient feedback for a quarterly report. "
          "Use only what the comments say.")
SYSTEM_OWN = ("You write short, factual summaries of free-text feedback for a report. "
              "Use only what the comments say.")  # a bundle of a team's own data (not NHS)
# "2. words", "2: words", "[2] words", "QUOTE 2: words", "- 2) words"
QUOTE_LINE = re.compile(r"^\s*(?:[-*•]\s*)?(?:\**QUOTE\**\s*)?\[?#?(\d{1,3})\]?\s*[:.)-]?\s+(.+?)\s*$",
                        re.IGNORECASE)
QUOTE_MARKS = "\"'“”‘’«»"


def shown(text: str) -> str:
    """A comment as the prompt shows it: one line, at most MAX_COMMENT_CHARS characters."""
    return " ".join(text.split())[:MAX_COMMENT_CHARS]


def _listing(theme: str, comments: int, negative: int | None, sample: Sequence[str], patients: bool) -> str:
    listed = "\n".join(f"{n}. {shown(t)}" for n, t in enumerate(sample, start=1))
    counts = f"{comments} comments" + (f", {negative} negative" if negative is not None else "")
    return f"{'Patient comments' if patients else 'Comments'} about {theme.lower()} ({counts}); a sample:\n{listed}"


def _body(user: str, max_tokens: int, patients: bool = True) -> dict[str, Any]:
    system = SYSTEM if patients else SYSTEM_OWN
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stream": False}


def summary_request(theme: str, comments: int, negative: int | None, sample: Sequence[str],
                    patients: bool = True) -> dict[str, Any]:
    """The chat body asking for a two-sentence summary of the theme. `sample`: redacted texts;
    `negative`: None where the scale has no known negative end; `patients`: the NHS wording."""
    who = "these patients say" if patients else "these comments say"
    return _body(f"{_listing(theme, comments, negative, sample, patients)}\n\nSummarise in two sentences "
                 f"what {who} about {theme.lower()}.", SUMMARY_TOKENS, patients)


def quotes_request(theme: str, comments: int, negative: int | None, sample: Sequence[str],
                   quotes: int, patients: bool = True) -> dict[str, Any]:
    """The chat body asking for `quotes` comments copied word for word, numbered."""
    who = "patients say" if patients else "people say"
    return _body(f"{_listing(theme, comments, negative, sample, patients)}\n\nWhich {quotes} comments best "
                 f"show what {who} about {theme.lower()}? Answer with the comments copied "
                 "word for word, each on its own line starting with its number.",
                 20 + TOKENS_PER_QUOTE * quotes, patients)


def parse_summary(text: str) -> str:
    """The summary: the answer's lines joined, a leading 'Summary:' dropped."""
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return re.sub(r"^\**summary\**\s*:\s*", "", joined, flags=re.IGNORECASE)


def parse_quotes(text: str) -> list[tuple[int, str]]:
    """(comment number as cited, 1-based; the words) for each numbered line of the answer. The
    words are trimmed of surrounding quote marks and of one final full stop the model may add;
    nothing else is changed (grounding checks them verbatim)."""
    out = []
    for line in text.splitlines():
        m = QUOTE_LINE.match(line)
        if m:
            words = m.group(2).strip().strip(QUOTE_MARKS).strip()
            out.append((int(m.group(1)), words[:-1] if words.endswith(".") else words))
    return out


def completion_text(completion: dict[str, Any]) -> str:
    """The assistant's text of an OpenAI chat completion (choices[0].message.content).
    Raises ValueError when the answer has no such text."""
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError("the LLM's answer is not a chat completion") from exc
    if not isinstance(content, str):
        raise ValueError("the LLM's answer has no text")
    return content
