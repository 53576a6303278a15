"""One name, context: a bundle's `serving.context` says what its model reads beside the text (the
NHS preset's question type, a team's own context column, or nothing), and `Serving.contexts`
is the one place that picks each comment's value. Manifests written with the two flags before
it read as the same context."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from twolane.bundle import Serving
from twolane.contract import CommentIn

ITEMS = [CommentIn(comment_id="1", comment_text="a", question_type="what_good", context="Ward 7"),
         CommentIn(comment_id="2", comment_text="b")]


@pytest.mark.parametrize(("flags", "context"), [
    ({"use_question_type": True, "use_context": False}, "question_type"),  # an NHS instant bundle
    ({"use_question_type": False, "use_context": True}, "column"),  # a team's own context column
    ({"use_context": False}, "none"),  # an NHS batch bundle (its transformer reads the text alone)
    ({"use_question_type": False, "use_context": False}, "none"),
])
def test_older_manifests_two_flags_read_as_one_context(flags: dict[str, bool], context: str) -> None:
    s = Serving.model_validate({**flags, "known_output": "known_ngrams"})
    assert s.context == context and s.known_output == "known_ngrams"
    assert "use_context" not in s.model_dump() and "use_question_type" not in s.model_dump()


def test_a_new_manifest_round_trips_and_unknown_keys_stay_refused() -> None:
    s = Serving(context="column", max_length=128)
    assert Serving.model_validate_json(s.model_dump_json()) == s
    with pytest.raises(ValidationError):
        Serving.model_validate({"context": "ward"})
    with pytest.raises(ValidationError):
        Serving.model_validate({"context": "none", "use_contexts": True})


def test_each_comment_gives_the_value_of_the_bundles_context() -> None:
    assert Serving(context="column").contexts(ITEMS) == ["Ward 7", None]
    assert Serving(context="question_type").contexts(ITEMS) == ["what_good", None]
    # no context: the question type is still passed on (a batch bundle's instant lane and its
    # sentiment mix read it); a model with no context ignores it
    assert Serving(context="none").contexts(ITEMS) == ["what_good", None]
