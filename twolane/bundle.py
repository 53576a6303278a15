"""Versioned artefact bundles: a folder of model files plus a typed `manifest.json`.

Both lanes write and read the same format. Layout::

    bundles/<lane>/<version>/manifest.json
    bundles/<lane>/<version>/<model files named in manifest.files>

`version` sorts by time (UTC timestamp + short data fingerprint), so the newest is the max.

The manifest is the contract between the build and serving: every rule serving applies is a
typed field here (the taxonomy, each scorer's `DecideRule`, the ensemble, the sentiment mix,
what the model files expect). The records for people (`data`, `metrics`, `parity`, `build`)
are JSON that serving never reads. Loading is strict: an unknown or missing field fails with
`BundleError` naming the bundle and the field. A manifest of an older schema (before
`schema_version` 2) is refused with a "rebuild" message, and `latest_bundle` skips it, so the
local stack builds fresh models instead of serving one it cannot read (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

MANIFEST = "manifest.json"
SCHEMA_VERSION: Literal[2] = 2
Lane = Literal["instant", "batch"]
Record = dict[str, JsonValue]  # a JSON record for people: serving never reads it


class Section(BaseModel):
    """A manifest section: unknown fields are an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


class Taxonomy(Section):
    """What a bundle labels: its labels in model output order and its sentiment scale."""

    labels: list[str] = Field(min_length=1)
    # the label given, by rule, to text that cannot be labelled (never a model's choice); None:
    # the taxonomy has no such label
    unlabellable: str | None = None
    # sentiment classes in model output order (worst to best or best to worst as the data
    # says); [] = the bundle scores no sentiment
    sentiment_classes: list[str] = Field(default_factory=list)
    # what a client is shown for each class (Prediction.sentiment.label), in the same order;
    # [] = the class names themselves, or the NHS scale's names for classes "1".."5" (bundles
    # built before this field; twolane.rules.sentiment_names)
    sentiment_names: list[str] = Field(default_factory=list)
    # False: single-label, every labellable comment gets exactly one label, the most probable
    multilabel: bool = True

    @model_validator(mode="after")
    def _unlabellable_is_a_label(self) -> Taxonomy:
        if self.unlabellable is not None and self.unlabellable not in self.labels:
            raise ValueError(f"unlabellable label {self.unlabellable!r} is not among the labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels repeat")
        if self.sentiment_names and len(self.sentiment_names) != len(self.sentiment_classes):
            raise ValueError(f"{len(self.sentiment_names)} sentiment names for "
                             f"{len(self.sentiment_classes)} sentiment classes")
        return self


class DataSpec(Section):
    """How the training file was read (model_build.dataspec): a record of the spec, and what
    serving needs of it (the context column's values). preset "nhs": the NHS v6 file read
    by its own loader (model_build.data), the other fields then describe that file."""

    preset: Literal["nhs"] | None = None
    file_format: Literal["csv", "tsv", "xlsx", "jsonl"] = "csv"
    id_column: str
    text_column: str
    labels_column: str | None = None  # one cell per row: one label, or several joined by label_sep
    label_sep: str = ";"
    label_columns: list[str] = Field(default_factory=list)  # wide 0/1 columns, one per label
    sentiment_column: str | None = None
    sentiment_order: list[str] = Field(default_factory=list)  # class order as read (worst..best or as given)
    # False: words given without --sentiment-order, classes sorted by name (no negative end)
    sentiment_ordered: bool = True
    context_column: str | None = None
    # the context values seen in training (as written in the file); a value not among them
    # conditions nothing at serving time
    context_values: list[str] = Field(default_factory=list)
    unlabellable: str | None = None  # the data's "cannot be labelled" label, if it has one


class DecideRule(Section):
    """How one scorer's probabilities become labels (twolane.rules.decide_labels).

    thresholds: per label, in taxonomy order (the unlabellable label's entry is never read);
    min_one_label: the top-label fallback; label_ratio: the second-label rule (0 = off);
    never_fallback: labels too rare in training to trust, which the fallback never picks.
    """

    thresholds: list[float]
    min_one_label: bool = False
    label_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    never_fallback: list[str] = Field(default_factory=list)


class ModelEntry(Section):
    """One model file in the bundle and what it predicts."""

    file: str
    task: Literal["multilabel", "sentiment", "generation"]
    kind: str  # e.g. "tfidf-linear", "tfidf-xgboost", "encoder-int8", "encoder-fp16"
    labels: list[str] = Field(default_factory=list)  # output order
    rule: DecideRule | None = None  # multilabel models only
    inputs: dict[str, str] = Field(default_factory=dict)  # ONNX input name -> meaning
    outputs: dict[str, str] = Field(default_factory=dict)  # ONNX output name -> meaning
    provider: str | None = None  # the onnxruntime execution provider the file is made for
    note: str = ""


class InstantEnsemble(Section):
    """The instant lane's weighted mean of its member models' label probabilities."""

    members: list[str] = Field(min_length=1)
    weights: list[float] = Field(min_length=1)
    rule: DecideRule

    @model_validator(mode="after")
    def _one_weight_each(self) -> InstantEnsemble:
        if len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.weights)} weights for {len(self.members)} members")
        return self


class SentimentStack(Section):
    """A multinomial logistic regression over both lanes' log-probabilities and the context
    one-hot (twolane.predictors.batch.stack_features): coef classes x features, intercept classes."""

    coef: list[list[float]]
    intercept: list[float]
    C: float = 1.0  # the regularisation it was fitted with
    features: str = ""  # what the columns of coef are, in words


class SentimentMix(Section):
    """How the batch lane combines its sentiment with the instant lane's (`mix_sentiment`):
    "transformer" alone, a weighted mean ("mix") with `weight_transformer`, or a "stack"."""

    method: Literal["transformer", "mix", "stack"] = "transformer"
    weight_transformer: float = Field(default=1.0, ge=0.0, le=1.0)
    stack: SentimentStack | None = None
    nested_accuracy: dict[str, float] = Field(default_factory=dict)  # the evidence, per method

    @model_validator(mode="after")
    def _stack_given(self) -> SentimentMix:
        if self.method == "stack" and self.stack is None:
            raise ValueError("method 'stack' needs a stack")
        return self


class CascadePoint(Section):
    """One point of the cascade's curve on the validation fold: the cut-offs, the share of
    comments escalated (0..1) and the cascade's scores there (the batch lane's at share 1)."""

    theme_margin_below: float
    sentiment_margin_below: float
    escalate_share: float = Field(ge=0.0, le=1.0)
    macro_f1: float
    micro_f1: float
    exact_accuracy: float
    sentiment_accuracy: float


class Cascade(Section):
    """When a `"lane": "auto"` job sends a comment to the batch lane (twolane.predictors.cascade).

    The instant lane labels every comment; a comment is escalated when its theme margin (min over
    labels of |logit p - logit threshold| of the instant lane's label probabilities, the
    unlabellable label left out; a single-label taxonomy: top minus second label probability)
    is under `theme_margin_below`, or its sentiment margin (top minus second sentiment
    probability, any scale) is under `sentiment_margin_below`. Comments the instant
    lane cannot label (no sentiment: unlabellable or unknown text) are never escalated: both
    lanes answer them by rule. Learned on the validation fold only (`tuned_on`); `curve` is the
    best cut-off pair per share there; `escalate_share` is the shipped point's share on it.
    """

    score: str = ("escalate if min_label |logit p - logit t| < theme_margin_below (single-label: "
                  "p_label_top - p_label_second) or p_sentiment_top - p_sentiment_second < "
                  "sentiment_margin_below")
    theme_margin_below: float = Field(ge=0.0)
    sentiment_margin_below: float = Field(ge=0.0)
    escalate_share: float = Field(ge=0.0, le=1.0)
    chosen_by: str = ""
    instant_version: str  # the instant bundle whose probabilities the cut-offs read
    tuned_on: str = ""
    validation_rows: int = 0
    curve: list[CascadePoint] = Field(default_factory=list)


class BatchEnsemble(Section):
    """The batch lane's ensemble of the transformer and the embedded instant bundle."""

    members: list[str] = Field(min_length=1)
    weight_transformer: float = Field(ge=0.0, le=1.0)
    combine: Literal["probability", "logit"] = "probability"
    instant_model: str  # the instant bundle's model mixed in ("ensemble", "linear", ...)
    instant_version: str  # the instant bundle the ensemble was tuned with
    instant_dir: str  # its copy inside this bundle
    rule: DecideRule
    sentiment: SentimentMix = Field(default_factory=SentimentMix)
    objective: str = ""
    tuned_on: str = ""
    val_macro_f1: float | None = None
    val_micro_f1: float | None = None
    cascade: Cascade | None = None  # the "lane": "auto" rule (None: bundles built before it)


# The context a bundle's model reads beside the text (one word ` qt_<token>` appended): none,
# the NHS preset (each comment's `question_type`: what_good / could_improve / nonspecific) or a
# team's own context column (DataSpec.context_column: each comment's `context`).
ContextKind = Literal["none", "question_type", "column"]


class HasContext(Protocol):
    """What `Serving.contexts` reads of a comment (twolane.contract.CommentIn has it)."""

    @property
    def question_type(self) -> str | None: ...

    @property
    def context(self) -> str | None: ...


class Serving(Section):
    """What the model files expect of their input.

    context: the context the model reads (`ContextKind`; the token rules are
    twolane.rules.model_input for the NHS question type, twolane.rules.context_input for a
    context column); known_output: the instant ONNX output counting known n-grams (the
    unknown-text rule), None = no such output; tokenizer / max_length: the batch lane's
    tokenizer file and truncation, in tokens.
    """

    context: ContextKind = "none"
    known_output: str | None = None
    tokenizer: str | None = None
    max_length: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _two_flags(cls, raw: object) -> object:
        """Manifests written before `context` (schema 2 too) carry two flags: read them as one."""
        if not isinstance(raw, dict) or not {"use_question_type", "use_context"} & raw.keys():
            return raw
        raw = dict(raw)
        qt, own = bool(raw.pop("use_question_type", False)), bool(raw.pop("use_context", False))
        raw.setdefault("context", "column" if own else "question_type" if qt else "none")
        return raw

    def contexts(self, items: Iterable[HasContext]) -> list[str | None]:
        """Each comment's context value, the one place that decides it: its `context` for a
        bundle with a context column, else its `question_type` (the NHS preset; the batch lane
        passes it on to its instant lane and sentiment mix; a model with no context ignores it)."""
        if self.context == "column":
            return [i.context for i in items]
        return [i.question_type for i in items]


USE_INSTANT = ("train the batch lane on this model's data with `twolane build batch --data FILE` and the "
               "same data-spec flags (docs/own_data.md), or use the instant lane (POST /v1/predict, or the "
               "drop folder's inbox/)")
NO_BATCH_OF_TAXONOMY = "no batch model of this model's taxonomy is known to this service: " + USE_INSTANT


def _shown(names: list[str], most: int = 4) -> str:
    return ", ".join(repr(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def taxonomy_mismatch(instant: Taxonomy, batch: Taxonomy) -> str | None:
    """What differs between two taxonomies in the labels or the sentiment classes they answer
    in (one line, naming a few of the labels or classes), or None when they are the same."""
    if instant.labels != batch.labels:
        only = [lab for lab in instant.labels if lab not in batch.labels]
        what = (f"labels {_shown(only)} are not among its {len(batch.labels)} labels" if only
                else f"its {len(batch.labels)} labels differ in number or order from this model's "
                     f"{len(instant.labels)}")
        return f"the batch lane's model has another taxonomy: {what}"
    if instant.sentiment_classes != batch.sentiment_classes:
        return (f"the batch lane's model has other sentiment classes ({_shown(batch.sentiment_classes) or 'none'}) "
                f"than this model ({_shown(instant.sentiment_classes) or 'none'})")
    return None


class Manifest(Section):
    """What a bundle holds, how it serves, how it was made and how good it is."""

    schema_version: Literal[2] = SCHEMA_VERSION
    lane: Lane
    version: str
    created_at: str
    taxonomy: Taxonomy
    models: dict[str, ModelEntry]  # name -> entry, e.g. "linear", "xgboost", "sentiment"
    default_model: str  # name in `models` (or "ensemble") that serves /v1/predict
    ensemble: InstantEnsemble | BatchEnsemble | None = None
    serving: Serving = Field(default_factory=Serving)
    data_spec: DataSpec | None = None  # None: an NHS bundle built before data specs
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256
    library_versions: dict[str, str] = Field(default_factory=dict)
    data: Record = Field(default_factory=dict)  # training-data fingerprint, rows, split
    metrics: Record = Field(default_factory=dict)  # test-split metrics per model
    parity: Record = Field(default_factory=dict)  # ONNX vs in-memory agreement
    build: Record = Field(default_factory=dict)  # the training configuration as run

    @field_validator("data", "metrics", "parity", "build", mode="before")
    @classmethod
    def _plain_json(cls, value: object) -> object:
        """Records as the build hands them (tuples, nested dicts) become plain JSON."""
        return json.loads(json.dumps(value)) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        want = InstantEnsemble if self.lane == "instant" else BatchEnsemble
        if self.ensemble is not None and not isinstance(self.ensemble, want):
            raise ValueError(f"a {self.lane} bundle needs a {want.__name__} ensemble")
        if self.default_model != "ensemble" and self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among the models")
        if self.default_model == "ensemble" and self.ensemble is None:
            raise ValueError("default_model is 'ensemble' but the bundle has no ensemble")
        n = len(self.taxonomy.labels)
        rules = [e.rule for e in self.models.values()] + [getattr(self.ensemble, "rule", None)]
        for rule in rules:
            if rule is not None and len(rule.thresholds) != n:
                raise ValueError(f"a rule has {len(rule.thresholds)} thresholds for {n} labels")
            if rule is not None and set(rule.never_fallback) - set(self.taxonomy.labels):
                raise ValueError("never_fallback names a label not in the taxonomy")
        return self

    @property
    def labels(self) -> list[str]:
        """The taxonomy's labels, in model output order."""
        return self.taxonomy.labels

    @property
    def sentiment_classes(self) -> list[str]:
        return self.taxonomy.sentiment_classes

    def batch_lane_refuses(self, batch: Taxonomy | None) -> str | None:
        """Why the batch lane (and so the cascade) cannot answer for this instant bundle's
        comments, or None: the batch bundle's taxonomy (`batch`, twolane.wiring.batch_taxonomy)
        must be this one (labels and sentiment classes, `taxonomy_mismatch`), or its answers
        would be in other labels. `batch` None (no batch bundle known here yet, e.g. still
        being built): an NHS bundle is answered (the default batch build is the NHS one), any
        other taxonomy is refused. One line, naming the mismatch and what to do."""
        if batch is None:
            return None if self.is_nhs else NO_BATCH_OF_TAXONOMY
        mismatch = taxonomy_mismatch(self.taxonomy, batch)
        return None if mismatch is None else f"{mismatch}: {USE_INSTANT}"

    @property
    def is_nhs(self) -> bool:
        """Whether the bundle is of the NHS rule book's taxonomy (pxtextmining's routes serve
        only such bundles): built by the NHS preset, or before data specs existed."""
        return self.data_spec is None or self.data_spec.preset == "nhs"

    def rule_of(self, model: str) -> DecideRule:
        """The decide rule of `model` ("ensemble" or a multilabel model's name).

        Raises BundleError when that model is absent or has no rule."""
        rule = self.ensemble.rule if model == "ensemble" and self.ensemble is not None else None
        if model != "ensemble" and model in self.models:
            rule = self.models[model].rule
        if rule is None:
            raise BundleError(f"bundle {self.version}: model {model!r} has no decide rule")
        return rule


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version(data_fingerprint: str) -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + data_fingerprint[:8]


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Hash every file the manifest names (models and extra files) and write manifest.json."""
    files = {m.file for m in manifest.models.values()} | set(manifest.files)
    manifest.files = {f: sha256_file(bundle_dir / f) for f in sorted(files)}
    path = bundle_dir / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return path


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, of an older schema or does not match its manifest."""


def _schema_of(raw: object) -> object:
    return raw.get("schema_version") if isinstance(raw, dict) else None


def read_manifest(bundle_dir: Path, verify: bool = False) -> Manifest:
    """The bundle's manifest, validated (and with verify=True every file checked against its
    sha256). Raises BundleError naming the bundle and, for a bad manifest, the field."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{MANIFEST} in {bundle_dir} is not readable JSON ({type(e).__name__})") from e
    if _schema_of(raw) != SCHEMA_VERSION:
        lane = raw.get("lane", "<lane>") if isinstance(raw, dict) else "<lane>"
        raise BundleError(f"bundle {bundle_dir} has manifest schema {_schema_of(raw) or 1}, this twolane "
                          f"reads schema {SCHEMA_VERSION}: rebuild it with `twolane build {lane}`")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BundleError(f"bundle {bundle_dir}: manifest field {field}: {first['msg']} "
                          f"({e.error_count()} problem(s))") from None
    if verify:
        for rel, digest in manifest.files.items():
            f = Path(bundle_dir) / rel
            if not f.is_file() or sha256_file(f) != digest:
                raise BundleError(f"{rel} in {bundle_dir} is missing or does not match its hash")
    return manifest


def _current(bundle_dir: Path) -> bool:
    """Whether bundle_dir's manifest is of the schema this twolane reads."""
    try:
        return _schema_of(json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))) == SCHEMA_VERSION
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def latest_bundle(root: Path, lane: Lane) -> Path | None:
    """The newest complete bundle of the current manifest schema under root/<lane>/, or None."""
    lane_dir = Path(root) / lane
    if not lane_dir.is_dir():
        return None
    done = [p for p in lane_dir.iterdir() if (p / MANIFEST).is_file() and _current(p)]
    return max(done, key=lambda p: p.name) if done else None


def resolve_bundle(path_or_root: str | os.PathLike[str], lane: Lane) -> Path:
    """A bundle folder itself, or the newest bundle of `lane` under a bundles root."""
    p = Path(path_or_root)
    if (p / MANIFEST).is_file():
        return p
    found = latest_bundle(p, lane)
    if found is None:
        raise BundleError(f"no {lane} bundle at {p} (run `twolane build {lane}`)")
    return found
