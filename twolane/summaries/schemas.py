"""Request and response shapes of POST /v1/summaries (and of its job's results)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from twolane.contract import CommentIn

MAX_POINTS = 8


class SummaryRequest(BaseModel):
    """POST /v1/summaries: the comments, optionally the themes to report on (default: every
    theme the classifier finds), and at most how many points per theme (1 to 8)."""

    model_config = ConfigDict(extra="forbid")

    items: list[CommentIn]
    themes: list[str] | None = Field(None, min_length=1, max_length=64)
    points_per_theme: int = Field(5, ge=1, le=MAX_POINTS)
    # The request field of the answer before points (one quote per point now): still accepted so
    # an older client keeps working, and read as nothing (points_per_theme bounds the quotes).
    quotes_per_theme: int | None = Field(None, ge=0, le=5, deprecated=True)


class Quote(BaseModel):
    """One submitted comment, whole and verbatim but for identifiers (redacted)."""

    comment_id: str
    text: str


class Point(BaseModel):
    """A group of a theme's comments that say the same thing (found without any LLM)."""

    point: str  # a short label: the group's own most distinctive words
    comments: int  # how many of the theme's comments (see ThemeSummary.sampled)
    negative: int | None  # of those, how many negative (NHS scale); None: no NHS scale
    quote: Quote  # the group's most central comment


class ThemeSummary(BaseModel):
    """One theme: the classifier's counts, its points, and the LLM's summary when it passed
    every check (twolane.summaries.checks), else `summary` null and `withheld` the reason."""

    theme: str
    comments: int  # submitted comments the instant lane labels with this theme
    # of those, how many it reads as negative or very negative (the NHS scale); None: the
    # bundle's own sentiment scale (or none), which has no known negative end
    negative: int | None
    summary: str | None = None  # at most 2 sentences; None: withheld (or the theme is empty)
    withheld: str | None = None  # why there is no summary (one line), else None
    # Points, biggest first. They are found in `sampled` of the theme's comments (all of them
    # when sampled == comments); when fewer, each point's counts are its share of the sample
    # scaled to the theme (rounded down), so they add up to at most `comments`.
    points: list[Point] = Field(default_factory=list)
    other: int = 0  # comments in no point: comments - sum of the points' comments
    sampled: int = 0


class SummaryResults(BaseModel):
    """GET /v1/jobs/{id} of a summary job, once: `model_version` is the classifier's, `llm`
    the model that wrote the summaries ("none": switched off), `points_by` the encoder the
    points were clustered with ("words": TF-IDF of the comments' words, no encoder found)."""

    job_id: str
    target: str = "summary"
    model_version: str
    llm: str
    points_by: str
    themes: list[ThemeSummary]
