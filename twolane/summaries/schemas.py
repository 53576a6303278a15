"""Request and response shapes of POST /v1/summaries (and of its job's results)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from twolane.contract import CommentIn

MAX_QUOTES = 5


class SummaryRequest(BaseModel):
    """POST /v1/summaries: the comments, optionally the themes to report on (default: every
    theme the classifier finds), and how many verbatim quotes per theme (0 to 5)."""

    model_config = ConfigDict(extra="forbid")

    items: list[CommentIn]
    themes: list[str] | None = Field(None, min_length=1, max_length=64)
    quotes_per_theme: int = Field(3, ge=0, le=MAX_QUOTES)


class Quote(BaseModel):
    """A span of one submitted comment (identifiers redacted), found verbatim in it."""

    comment_id: str
    text: str


class ThemeSummary(BaseModel):
    """One theme: the classifier's counts, the LLM's summary, grounded quotes."""

    theme: str
    comments: int  # submitted comments the instant lane labels with this theme
    # of those, how many it reads as negative or very negative (the NHS scale); None: the
    # bundle's own sentiment scale (or none), which has no known negative end
    negative: int | None
    summary: str  # written by the LLM from a sample of the theme's comments ("" when none)
    quotes: list[Quote] = Field(default_factory=list)


class SummaryResults(BaseModel):
    """GET /v1/jobs/{id} of a summary job, once: `model_version` is the classifier's, `llm`
    the model that wrote the summaries."""

    job_id: str
    target: str = "summary"
    model_version: str
    llm: str
    themes: list[ThemeSummary]
