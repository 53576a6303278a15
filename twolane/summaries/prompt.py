"""The OpenAI chat-completions request of one theme, and the parse of its answer.

The model sees only the theme's name, its counts and its points (labels made of the comments'
own words, with their counts), never a comment: quotes are chosen without it. It is asked for
at most two sentences as JSON ({"summary": "..."}), bounded by `response_format` (a JSON
schema; llama.cpp turns it into a grammar, vLLM and LMI take it as guided decoding) and by
`max_tokens`: greedy decoding. An engine that ignores the schema may answer plain text, which is
read as the summary; twolane.summaries.checks decides whether it is printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

SUMMARY_TOKENS = 110
SUMMARY_CHARS = 360  # the schema's bound on the summary string
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": SUMMARY_CHARS}},
    "required": ["summary"],
    "additionalProperties": False,
}

SYSTEM = ("You write one or two short sentences for a report on NHS patient feedback. Use only "
          "the facts given. Answer as JSON: {\"summary\": \"...\"}.")
SYSTEM_OWN = ("You write one or two short sentences for a report on free-text feedback. Use only "
              "the facts given. Answer as JSON: {\"summary\": \"...\"}.")  # a team's own data


def _count(n: int, negative: int | None) -> str:
    return f"{n} comments" + (f", {negative} negative" if negative is not None else "")


def summary_request(theme: str, comments: int, negative: int | None,
                    points: Sequence[tuple[str, int, int | None]], patients: bool = True) -> dict[str, Any]:
    """The chat body asking for a summary of one theme from its points: (label, comments,
    negative or None) each, biggest first. `negative`: None where the scale has no known
    negative end; `patients`: the NHS wording."""
    listed = "\n".join(f"- {label}: {_count(n, neg)}" for label, n, neg in points)
    user = (f"Theme: {theme} ({_count(comments, negative)}).\nWhat the comments say, biggest "
            f"point first:\n{listed}\n\nIn at most two sentences, say what most of these "
            f"{'patients' if patients else 'comments'} say about {theme.lower()}, using the "
            "words above. Do not add numbers.")
    return {"messages": [{"role": "system", "content": SYSTEM if patients else SYSTEM_OWN},
                         {"role": "user", "content": user}],
            "max_tokens": SUMMARY_TOKENS, "temperature": 0.0, "top_p": 1.0, "seed": 0,
            "stream": False, "response_format": {"type": "json_object", "schema": SCHEMA}}


def parse_summary(text: str) -> str:
    """The summary in the answer: the JSON object's `summary`, else the text itself (an engine
    that ignored the schema), whitespace collapsed, a leading 'Summary:' dropped."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
        if isinstance(data, dict) and isinstance(data.get("summary"), str):
            stripped = data["summary"]
    except ValueError:
        pass
    out = " ".join(stripped.split())
    return out[8:].lstrip() if out.lower().startswith("summary:") else out


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
