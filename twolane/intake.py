"""The one intake under every door: the API (`POST /v1/jobs`), pxtextmining's slow API
(`/api/StartContainerInstance`) and the drop folder (`inbox/`, `inbox/batch/`, `inbox/auto/`)
all hand it typed comments, a lane, a target and an `Origin`; it does the rest once:

    lane choice       "instant" (labelled here, now), "batch" (a job for the transformer
                      ensemble), "auto" (the cascade: the instant lane keeps what it is sure of)
    refusals          the batch lane for this instant model (`Manifest.batch_lane_refuses`), no
                      batch lane here, no cascade rule (`cascade_for`): `IntakeRefused`, a `why`
                      each door words in its own transport (HTTP 409, a report in failed/)
    the cascade       split (`predictors.cascade.split_lanes`), the kept instant results, the
                      escalated comments as the job's items
    submission        the jobs service (`submit`, `submit_auto`, `submit_done`); a refusal of the
                      endpoint itself is the service's `JobRejected`, passed on
    drift             the comments' drift metrics published (`twolane.drift`), whatever the door

The doors only read their transport into `CommentIn`s (and check its limits) and write
`Taken` back out (a results URL, a file in outbox/).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from twolane import drift
from twolane.bundle import Cascade
from twolane.contract import CommentIn, JobRequest, JobTarget, Prediction
from twolane.jobs.kinds import ClassifyPayload
from twolane.jobs.record import Delivery, JobRecord
from twolane.jobs.service import JobService, Kept
from twolane.predictors import Predictor
from twolane.predictors.cascade import split_lanes
from twolane.predictors.instant import InstantPredictor
from twolane.settings import Settings
from twolane.wiring import batch_taxonomy, cascade_rule

log = logging.getLogger("twolane.intake")

__all__ = ["CHUNK", "Door", "Intake", "IntakeRefused", "Loaded", "Models", "Origin", "Refusal", "Route",
           "Taken", "cascade_for", "label"]

Route = Literal["instant", "batch", "auto"]  # the lane a door asks for ("auto": the cascade)
Door = Literal["api", "slow_api", "dropfolder"]  # where comments came in
Refusal = Literal["taxonomy", "no_batch_lane", "no_cascade", "batch_waiting"]  # why a lane cannot take them

CHUNK = 1000  # comments per predictor call on the instant lane (bounded memory)

NO_BATCH_LANE = "the batch lane is not available on this service"
NO_CASCADE = "the cascade needs the batch bundle's cascade rule, and this service has none"


class IntakeRefused(Exception):
    """The lane asked for cannot take these comments on this service: the sender's to change
    (another lane). `why` says which rule refused; `reason` is one line safe to show (a door
    may say it in its own words for its transport)."""

    def __init__(self, why: Refusal, reason: str):
        super().__init__(reason)
        self.why = why
        self.reason = reason


@dataclass(frozen=True)
class Origin:
    """Where comments came from and what that door needs back: `owner` (the caller's tag, the
    only one a job is handed to), `blank_rows` (positions of blank texts, for pxtextmining's
    result shapes), `delivery` (a drop-folder job's result file), `defer` (a job may wait for
    a batch model still being built rather than be refused), `answers_here` (an answer the
    instant lane gives whole is returned to the door, which writes it, instead of becoming a
    finished job)."""

    door: Door
    owner: str | None = None
    blank_rows: tuple[int, ...] = ()
    delivery: Delivery | None = None
    defer: bool = False
    answers_here: bool = False

    @classmethod
    def api(cls, owner: str | None) -> Origin:
        """POST /v1/jobs: a job always (results URL), refused while the batch model is missing."""
        return cls("api", owner=owner)

    @classmethod
    def slow_api(cls, owner: str | None, blank_rows: Sequence[int]) -> Origin:
        """pxtextmining's slow API: a job always (its results URL), deferred while the batch
        model is missing."""
        return cls("slow_api", owner=owner, blank_rows=tuple(blank_rows), defer=True)

    @classmethod
    def dropfolder(cls, delivery: Delivery, blank_rows: Sequence[int]) -> Origin:
        """An inbox/ file: answered in place (outbox/) when the instant lane answers it whole,
        else a deferrable job whose results `delivery` writes."""
        return cls("dropfolder", blank_rows=tuple(blank_rows), delivery=delivery, defer=True,
                   answers_here=True)


class Models(Protocol):
    """The instant model as a door holds it: `loaded` (None while not loaded: nothing is loaded
    just to check a refusal or drift) and `get()` (loads it; raises what the door raises)."""

    @property
    def loaded(self) -> Predictor | None: ...

    def get(self) -> Predictor: ...


@dataclass(frozen=True)
class Loaded:
    """A model already at hand (the drop folder's Lambda loads it at import)."""

    predictor: Predictor

    @property
    def loaded(self) -> Predictor | None:
        return self.predictor

    def get(self) -> Predictor:
        return self.predictor


@dataclass
class Taken:
    """What the intake did with one request or file of `items` comments: a job (`record`;
    `sent` of them went to the batch lane), or, for an `answers_here` origin that the instant
    lane answered whole, its `predictions` (in input order) by `model_version`. `drift`: the
    drift metrics published (None: the bundle has no drift reference)."""

    route: Route
    items: int
    sent: int = 0
    record: JobRecord | None = None
    predictions: list[Prediction] | None = None
    model_version: str | None = None
    drift: dict[str, float] | None = None


def label(predictor: Predictor, items: Sequence[CommentIn], target: JobTarget = "ms") -> list[Prediction]:
    """The instant lane's predictions for `items`, CHUNK at a time (bounded memory), in order."""
    preds: list[Prediction] = []
    for i in range(0, len(items), CHUNK):
        preds.extend(predictor.predict(items[i : i + CHUNK], target=target))
    return preds


def cascade_for(predictor: Predictor, settings: Settings) -> tuple[InstantPredictor, Cascade]:
    """The cascade this service runs for `predictor`: the instant predictor and the batch
    bundle's rule (`wiring.cascade_rule`). Raises IntakeRefused("no_cascade") when there is no
    rule or the model is not an instant one. The one place that says whether "auto" is open."""
    rule = cascade_rule(settings)
    if rule is None or not isinstance(predictor, InstantPredictor):
        raise IntakeRefused("no_cascade", NO_CASCADE)
    if predictor.version != rule.instant_version:
        log.warning("cascade rule learned on instant bundle %s; serving %s", rule.instant_version,
                    predictor.version)
    return predictor, rule


def _job_body(items: Sequence[CommentIn], target: JobTarget) -> dict[str, object]:
    """What the batch host reads: a JobRequest of the comments sent, without the lane."""
    return JobRequest(items=list(items), target=target).model_dump(exclude={"lane"})


@dataclass
class Intake:
    """The intake of one service: its settings, its instant model (`Models`) and its jobs
    service (`jobs()`: None where there is no batch lane; a door may raise its own refusal
    instead). Cheap to build: a door may make one per request."""

    settings: Settings
    model: Models
    jobs: Callable[[], JobService | None]

    def take(self, items: Sequence[CommentIn], route: Route, target: JobTarget, origin: Origin) -> Taken:
        """Label, submit or split `items` as `route` asks, for `origin`; publish their drift.

        Raises IntakeRefused ("taxonomy": the batch lane does not answer in this instant
        model's taxonomy; "no_batch_lane"; "no_cascade": `cascade_for`), JobRejected (the
        endpoint refused the invocation: try again later), and what `model.get()` and `jobs()`
        raise."""
        if route == "instant":
            taken = self._instant(items, target, origin, None if origin.answers_here else self._jobs())
        else:
            self.refuse_batch_lane()
            jobs = self._jobs()
            taken = (self._submit(items, target, origin, jobs, None) if route == "batch"
                     else self._auto(items, target, origin, jobs))
        taken.drift = self._drift(items, origin)
        return taken

    def refuse_batch_lane(self) -> None:
        """Raises IntakeRefused("taxonomy") when the batch lane cannot answer for the loaded
        instant model (`Manifest.batch_lane_refuses` against `wiring.batch_taxonomy`); no model
        loaded: nothing to check."""
        manifest = getattr(self.model.loaded, "manifest", None)
        reason = manifest.batch_lane_refuses(batch_taxonomy(self.settings)) if manifest is not None else None
        if reason:
            raise IntakeRefused("taxonomy", reason)

    def _jobs(self) -> JobService:
        jobs = self.jobs()
        if jobs is None:
            raise IntakeRefused("no_batch_lane", NO_BATCH_LANE)
        return jobs

    def _instant(self, items: Sequence[CommentIn], target: JobTarget, origin: Origin,
                 jobs: JobService | None) -> Taken:
        """Every comment on the instant lane, now: returned (`answers_here`) or a finished job."""
        predictor = self.model.get()
        preds = label(predictor, items, target)
        if jobs is None:
            return Taken("instant", len(items), predictions=preds, model_version=predictor.version)
        payload: ClassifyPayload = {"model_version": predictor.version, "target": target,
                   "results": [p.model_dump(mode="json") for p in preds]}
        record = jobs.submit_done("classify", target, payload, len(items), owner=origin.owner,
                                  blank_rows=list(origin.blank_rows))
        return Taken("instant", len(items), record=record, model_version=predictor.version)

    def _auto(self, items: Sequence[CommentIn], target: JobTarget, origin: Origin, jobs: JobService) -> Taken:
        """The cascade: the instant lane labels every comment (as /v1/predict would), the rule
        picks the unsure ones, and only those go to the batch lane with the kept results."""
        if cascade_rule(self.settings) is None:  # no batch bundle yet (e.g. still building): wait, as plain jobs
            waiting = jobs.invoker.unavailable_reason("classify")
            if waiting:
                raise IntakeRefused("batch_waiting", waiting)
        predictor, rule = cascade_for(self.model.get(), self.settings)
        preds, esc = split_lanes(predictor, rule, items, target)
        escalated = [int(i) for i in np.flatnonzero(esc)]
        if not escalated and origin.answers_here:
            return Taken("auto", len(items), predictions=preds, model_version=predictor.version)
        kept = Kept(results=[p.model_dump(mode="json") for p, e in zip(preds, esc.tolist(), strict=True) if not e],
                    escalated=escalated, instant_version=predictor.version)
        return self._submit(items, target, origin, jobs, kept)

    def _submit(self, items: Sequence[CommentIn], target: JobTarget, origin: Origin, jobs: JobService,
                kept: Kept | None) -> Taken:
        """A batch-lane job of `items` (of the escalated ones only, with `kept`: a cascade job)."""
        blank_rows = list(origin.blank_rows)
        if kept is None:
            record = jobs.submit("classify", target, len(items), _job_body(items, target), owner=origin.owner,
                                 defer=origin.defer, blank_rows=blank_rows, delivery=origin.delivery)
            return Taken("batch", len(items), sent=len(items), record=record)
        sent = [items[i] for i in kept.escalated]
        record = jobs.submit_auto(target, len(items), _job_body(sent, target), kept, owner=origin.owner,
                                  defer=origin.defer, blank_rows=blank_rows, delivery=origin.delivery)
        return Taken("auto", len(items), sent=len(sent), record=record, model_version=kept.instant_version)

    def _drift(self, items: Sequence[CommentIn], origin: Origin) -> dict[str, float] | None:
        """Compare the comments with the instant bundle's training data and publish the signals
        as CloudWatch metrics (`twolane.drift`; on AWS Lambda only, values returned either way).
        Advisory: no loaded model, no reference, or a failing check (logged by type) is None."""
        predictor = self.model.loaded
        if predictor is None:
            return None
        try:
            return drift.publish(drift.report_for(predictor, items),
                                 emit=self.settings.lambda_function_name is not None)
        except Exception as exc:  # the comments are taken already: drift must not undo that
            log.error("drift check failed for a %s intake (%s)", origin.door, type(exc).__name__)
            return None
