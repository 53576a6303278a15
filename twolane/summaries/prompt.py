"""One OpenAI chat-completions request per theme, and the parse of its answer.

The request is what the LLM endpoint's container takes at /invocations (llama.cpp server,
vLLM and LMI all accept the chat-completions body): greedy decoding, bounded output. The model
sees only redacted text of the theme's sampled comments, numbered [1]..[k].

Answer format asked for (and parsed leniently):
    SUMMARY: two or three sentences
    QUOTE 2: words copied from comment [2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_TOKENS = 220  # summary + quotes
MAX_COMMENT_CHARS = 400  # a longer comment is cut in the prompt (quotes may come only from what is shown)

SYSTEM = ("You write short, factual summaries of NHS patient feedback for a quarterly report. "
          "Use only what the comments say. Never invent names, numbers or events.")
QUOTE_LINE = re.compile(r"^\s*(?:[-*•]\s*)?\**QUOTE\**\s*\[?#?(\d+)\]?\s*[:.)-]\s*(.+?)\s*$", re.IGNORECASE)
SUMMARY_PREFIX = re.compile(r"^\s*\**SUMMARY\**\s*:\s*", re.IGNORECASE)
QUOTE_MARKS = "\"'“”‘’«»"


def shown(text: str) -> str:
    """A comment as the prompt shows it: one line, at most MAX_COMMENT_CHARS characters."""
    return " ".join(text.split())[:MAX_COMMENT_CHARS]


def chat_request(theme: str, comments: int, negative: int, sample: Sequence[str],
                 quotes: int) -> dict[str, Any]:
    """The chat-completions body for one theme. `sample`: redacted comment texts."""
    listed = "\n".join(f"[{n}] {shown(t)}" for n, t in enumerate(sample, start=1))
    ask_quotes = (f"Then copy {quotes} short phrases word for word from different comments, one "
                  f"per line, each as: QUOTE <comment number>: <exact words>" if quotes else "")
    user = (f"Theme: {theme}\n{comments} comments carry this theme, {negative} of them negative. "
            f"A sample:\n{listed}\n\n"
            f"Write SUMMARY: followed by two sentences on what these patients say about "
            f"{theme}. {ask_quotes}").strip()
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            "max_tokens": MAX_TOKENS, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stream": False}


@dataclass(frozen=True)
class Parsed:
    summary: str
    quotes: list[tuple[int, str]]  # (comment number as cited, 1-based; quoted words)


def parse_answer(text: str) -> Parsed:
    """The summary (every line that is not a quote line, prefix removed) and the quote lines."""
    summary_lines: list[str] = []
    quotes: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = QUOTE_LINE.match(line)
        if m:
            quotes.append((int(m.group(1)), m.group(2).strip().strip(QUOTE_MARKS).strip()))
        elif line.strip():
            summary_lines.append(SUMMARY_PREFIX.sub("", line).strip())
    return Parsed(" ".join(s for s in summary_lines if s), quotes)


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
