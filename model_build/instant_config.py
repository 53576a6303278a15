"""The instant build's settings (`Config`, with the evidence for each choice), its graph's
output names and how a comment becomes the models' input (`inputs`)."""

from __future__ import annotations

from dataclasses import dataclass

from model_build import metrics
from model_build.data import Context
from twolane.rules import context_input, model_input

CONST_LOGIT = 20.0  # logit of a label that had one class only in training (prob ~ 0 or ~ 1)


# ONE ONNX file holds every model: the linear label heads, the sentiment head, the known-n-gram
# count and the XGBoost trees all read one binary bag of n-grams, so a comment is tokenised once.
MODEL_FILE = "instant.onnx"
SENTIMENT_OUTPUT = "sentiment"  # the sentiment head's output in MODEL_FILE
XGB_OUTPUT = "xgb_probabilities"  # the XGBoost trees' output in MODEL_FILE


@dataclass(frozen=True)
class Config:
    # Evidence for every choice below: 5-fold out-of-fold (OOF) on the TRAINING split, scored by
    # model_build.metrics (see /docs/quality.md). Vocabulary sets the dense work in ONNX (the
    # n-gram op emits [N, V], then one MatMul). 1-2-grams with min_df=2 give 10,090 n-grams;
    # linear OOF macro/micro: 6k .560/.765, 10k .568/.768 (1-3-grams 10k: .560/.768).
    max_features: int = 10_000
    min_df: int = 2
    ngram_max: int = 2
    # "svm": LinearSVC + Platt scaling (sigmoid fitted on 3-fold decision values) = one linear
    # model; "lr": logistic regression. OOF macro/micro/exact: lr C=30 .568/.768/.648,
    # svm C=1 .572/.772/.656, svm C=0.5 .567/.770/.650.
    linear_model: str = "svm"
    linear_C: float = 0.5  # with the char view below (OOF C=0.5; word-only models used C=1)
    linear_class_weight: str | None = "balanced"
    # Character view (`CharView`): the linear label model also reads the char_wb 2-5-grams of the
    # comment's vocabulary words (word pieces: "nurse" in "nurses", "nursing"), weighted by idf
    # and normalised by a norm that is linear in the word bag, so the whole view folds into the
    # same MatMul: serving reads the same word bag, no new text front. 5-fold OOF, linear alone
    # (thresholds tuned on other folds; macro, micro, exact, hamming): word only .546/.764/.648/
    # .0193, + char view .570/.778/.664/.0181 (true char_wb n-grams of the text, not exportable:
    # .568/.779/.666/.0181); ensemble with XGBoost + second-label rule: .554/.782/.684/.0171 ->
    # .577/.791/.693/.0164.
    char_view: bool = True
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    # Train the label models on comments that carry at least one label (pxtextmining does the
    # same); comments the labellers left unlabelled are noise for them. OOF macro .545 -> .560.
    labelled_rows_only: bool = True
    # 5-fold CV accuracy on train (lexicon features on): C=1 .660, 4 .660. With the char view
    # (`sentiment_char_view`, the label model's view, needs char_view): C=2 .663, 1 .667,
    # .5 .668; polarity set .869/.869/.893 (without the view .893).
    sentiment_C: float = 0.5
    sentiment_char_view: bool = True
    # Sentiment reads a sentiment lexicon (VADER's, a build-time dependency) as two extra
    # features: the positive and negative valence the comment's n-grams carry (negations and
    # "un-" words flip it). Both are linear in the TF-IDF row, so they fold into the sentiment
    # head. Hand-written polarity set: .69 -> .93+ on the right side; OOF accuracy unchanged.
    sentiment_lexicon: bool = True
    lexicon_scale: float = 3.0
    # Negated pairs ("no respect") of the common negators and lexicon words the training text
    # holds, not only the pairs it holds (model_build.lexicon.terms): vocabulary 15,271 ->
    # 17,622 on the NHS data. The new pairs are in no training row: OOF unchanged (.6675) and
    # the label models unchanged (docs/quality.md).
    lexicon_negate_unseen: bool = True
    # Polarity-ratio scaling of the sentiment head's n-gram features (`polarity_scale`, after
    # NBSVM, Wang & Manning 2012): column j is multiplied by |r_j| ** gamma, r_j = the log ratio
    # of its document frequency in positive (1-2) vs negative (4-5) training comments, so the
    # penalty falls on n-grams that carry no polarity. Folds into the weights (W_j * f_j).
    # 5-fold OOF accuracy (C .5, alpha 1): off .668; gamma .25 .671, .5 .675, .75 .674, 1 .674;
    # gamma .5 with C .3 .671, .7 .675; alpha .5 .672, 2 .675 (docs/quality.md).
    sentiment_polarity_gamma: float = 0.5
    sentiment_polarity_alpha: float = 1.0
    # The sentiment head served is this tuned one or a plain TF-IDF + logistic regression
    # (C = sentiment_baseline_C, balanced), whichever has the better out-of-fold accuracy on
    # the training rows (model_build.choose; issue 31: on drug reviews the tuned head was
    # .712 against the plain one's .755). A team's own data only: the NHS build keeps the tuned
    # head (the polarity set needs its lexicon). False: the tuned head, no choice.
    sentiment_baseline: bool = True
    sentiment_baseline_C: float = 10.0
    # XGBoost: 15 rounds at eta .8 (issue 10, speed). Trees are most of the ensemble's serving
    # time. Nested 5-fold OOF, ensemble .6/.4 with the char view and ratio .5 (macro, micro,
    # exact, hamming): 50 rounds at .3 .577/.791/.693/.0164; 30 at .45 .578/.792/.694/.0163;
    # 20 at .6 .576/.791/.693/.0164; 15 at .8 .582/.792/.694/.0164; 10 at .8 .582/.791/.691/
    # .0164; 10 at 1.0 .576/.789/.691/.0166; depth 3 (15 at .8) .580/.790/.691/.0165; depth 5
    # .580/.791/.693/.0165. Trees on the most frequent labels only (linear alone on the rest)
    # lose macro: 21 labels .579, 14 labels .578, 5 labels .573.
    xgb_rounds: int = 15
    xgb_depth: int = 4
    xgb_eta: float = 0.8
    xgb_max_bin: int = 32  # no effect: the trees read n-gram presence (one value)
    xgb_features: int = 3000  # XGBoost sees the most frequent TF-IDF columns only (speed)
    folds: int = 5
    threads: int = 1  # XGBoost threads: 2 OpenMP threads on a busy 2-core box run 10x slower
    # OOF, weights linear/xgboost (thresholds tuned on other folds, second-label rule, char
    # view): .6/.4 .577/.791/.693/.0164, .5/.5 .574/.790/.691/.0165 (macro, micro, exact, hamming).
    default_model: str = "ensemble"  # "linear", "xgboost" or "ensemble"
    ensemble_weights: tuple[float, float] = (0.6, 0.4)
    # A labellable comment no label clears its threshold for gets its most probable label
    # (pxtextmining serves the same). OOF ensemble: micro .760 -> .783, exact .650 -> .674.
    # It never gives a positive theme to a comment whose predicted sentiment is negative
    # (twolane.rules.fallback_barred; the build scores with OOF sentiment).
    min_one_label: bool = True
    # Second-label rule (twolane.rules.decide_labels min_ratio): a label other than a comment's
    # most probable one also needs >= label_ratio x that one's probability. Most comments carry
    # one label; the per-label-F1 thresholds add too many second labels. Evidence: 5-fold OOF
    # ensemble probabilities, thresholds tuned on 4/5 of the rows and scored on the 5th
    # (macro, micro, exact, hamming): ratio 0 .554/.774/.666/.0184, .3 (w .6) .560/.779/.672/
    # .0178, .45 .555/.782/.683/.0173, .5 .554/.782/.684/.0171, .55 .548/.782/.686/.0170,
    # .6 (w .6) .540/.780/.688/.0170. Tried and not better: per-label thresholds by coordinate
    # ascent on mean(macro, micro, exact) or on macro under the rule, a separate third-label
    # ratio, exempting rare labels, and a stacked per-label logistic regression over the two
    # members' probabilities, top-1 flag and best competing label (see docs/quality.md).
    # The rule is the ensemble's only: alone, linear and XGBoost lose macro-F1 with it (.546 ->
    # .529, .495 -> .487), and they serve without it.
    label_ratio: float = 0.5
    # Per-label thresholds shrunk toward threshold_prior with the weight of this many positives
    # (metrics.tune_thresholds): nested OOF (3 x 5-fold, thresholds tuned on 4/5), ensemble
    # .5521/.7441/.5991/.02148 -> .5580/.7449/.6000/.02138, linear .5465/.7334/.5683/.02319 ->
    # .5499/.7363/.5762/.02273, XGBoost .4587/.6884/.5291/.02746 -> .4519/.6933/.5368/.02671.
    # Weight 7/15 and prior .45/.55 within .0015 of this on the ensemble's macro-F1.
    threshold_prior_weight: float = 10.0
    threshold_prior: float = 0.5
    min_support: int = metrics.MIN_SUPPORT  # fewer training positives: flagged, never a fallback
    parity_min: float = 0.999  # share of test rows whose ONNX labels equal the in-memory ones
    chunk: int = 1000  # rows per ONNX call (the TF-IDF op emits dense rows)
    # Append " qt_<question type>" to each comment (twolane.rules.model_input): 5-fold OOF on
    # train, linear: macro-F1 .525 -> .531, micro-F1 .630 -> .669; sentiment accuracy .633 -> .646.
    use_question_type: bool = True
    # Words out of the vocabulary count as their nearest vocabulary word by sentence-encoder
    # embedding, cosine >= alias_min_cosine (model_build.aliases): strict OOF (vocabulary refitted
    # per fold), linear labels macro-AP .557 -> .577 at .6 (.574 at .7; encoder words only: .568
    # at .8, .573 at .7, .574 at .6, .570 at .5); sentiment accuracy unchanged.
    word_aliases: bool = True
    alias_min_cosine: float = 0.6
SMALL = Config(max_features=3000, xgb_rounds=25, xgb_features=1000, folds=3)
MIN_SUPPORT_NOTE = ("labels with fewer training positives than min_support: their F1 rests on "
                    "a handful of examples, do not rely on them")


# --------------------------------------------------------------------------- fitting
def ratio(model: str, cfg: Config) -> float:
    """The second-label rule's ratio for one of the bundle's models (the ensemble's only)."""
    return cfg.label_ratio if model == "ensemble" else 0.0


def inputs(text: str, question_type: str, cfg: Config, context: Context = "question_type") -> str:
    """The model input for one comment (the predictor builds the same with model_input, or
    context_input for a data spec's context column). context: the Dataset's."""
    if context == "column":
        return context_input(text, question_type)
    return model_input(text, question_type) if cfg.use_question_type and context == "question_type" else text
