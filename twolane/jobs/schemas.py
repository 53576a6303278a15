"""Request/response shapes of the summary (LLM) jobs. Classification jobs use twolane.contract's
JobRequest/JobResults unchanged; summaries are a separate route with their own shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from twolane.contract import CommentIn

DEFAULT_INSTRUCTION = "Summarise these patient comments in three bullet points."


class SummaryRequest(BaseModel):
    """POST /v1/summaries: comments plus what to do with them."""

    model_config = ConfigDict(extra="forbid")

    items: list[CommentIn]
    instruction: str = Field(DEFAULT_INSTRUCTION, min_length=1, max_length=1000)
    max_new_tokens: int = Field(200, ge=1, le=1024)


class SummaryResults(BaseModel):
    """The generated text (the comments themselves are not returned)."""

    job_id: str
    model_version: str
    target: str = "summary"
    items: int  # comments the summary was asked of
    items_used: int  # comments that fitted in the model's context
    summary: str
