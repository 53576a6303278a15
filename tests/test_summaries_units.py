"""The LLM lane's pure parts: redaction on a planted set, representative sampling, the prompt's
answer parse and verbatim grounding (no model needed); and the plan of a team's own bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from twolane.summaries.grounding import ground
from twolane.summaries.plan import llm_name
from twolane.summaries.prompt import (
    completion_text,
    parse_quotes,
    parse_summary,
    quotes_request,
    summary_request,
)
from twolane.summaries.redact import leaks, redact
from twolane.summaries.sample import representative

# (planted text, the identifier that must be gone, the tag that must be there)
PLANTED = [
    ("Please email me at jane.doe@example.co.uk about it", "jane.doe@example.co.uk", "[email]"),
    ("Call my daughter on 07700 900123 if needed", "07700 900123", "[phone]"),
    ("Ring 07700900123 for me", "07700900123", "[phone]"),
    ("My number is +44 7700 900123", "+44 7700 900123", "[phone]"),
    ("The ward phone (020) 7946 0018 was never answered", "7946 0018", "[phone]"),
    ("Reception 0161 496 0000 kept me waiting", "0161 496 0000", "[phone]"),
    ("My NHS number is 943 476 5919 and they lost it", "943 476 5919", "[nhs number]"),
    ("NHS no. 9434765919 was wrong on the letter", "9434765919", "[nhs number]"),
    ("NHS number 943-476-5919 typed wrong", "943-476-5919", "[nhs number]"),
    ("I live at LS1 4AP and the bus never comes", "LS1 4AP", "[postcode]"),
    ("Transport to sw1a 1aa took hours", "sw1a 1aa", "[postcode]"),
    ("Postcode M1 1AE on my letter was wrong", "M1 1AE", "[postcode]"),
    ("Dr Patel explained everything clearly", "Patel", "Dr [name]"),
    ("dr. Okafor listened to me", "Okafor", "[name]"),
    ("Nurse Sarah Jones was wonderful", "Sarah Jones", "Nurse [name]"),
    ("Thank you to Sister O'Brien on ward 7", "O'Brien", "Sister [name]"),
    ("Mrs Smith on reception was rude", "Smith", "Mrs [name]"),
    ("Mr Hughes the surgeon was great", "Hughes", "Mr [name]"),
    ("Ms Wong and Miss Taylor helped", "Taylor", "Miss [name]"),
    ("Matron Evans sorted it out", "Evans", "Matron [name]"),
    # full names without a title
    ("my mum Margaret Thornbury was looked after", "Thornbury", "my mum [name] was"),
    ("Sarah Jones on reception was rude", "Sarah Jones", "[name] on reception"),
    ("Thanks to Mary Ann McDonald-Smith for everything", "McDonald-Smith", "to [name] for"),
    ("My husband Łukasz Kowalski waited", "Kowalski", "husband [name] waited"),
    ("I saw Siobhan O'Connor twice", "O'Connor", "saw [name] twice"),
    ("The ring number was +44(0)121 496 0219", "496 0219", "[phone]"),
]
CLEAN = [
    "Waited 4 hours in A&E on 12/03/2024, staff were kind",
    "The nurse was lovely and the doctor explained things",
    "Parking cost £12.50 for 3 hours",
    "Ward 7 was clean, room 12 had a view",
    # names of places and services, and a title before a sentence, are not people's names
    "Cherry Ward and Park House were clean; the Hope Centre helped",
    "Staff at the Royal Victoria were great. June May be better",
    "I saw the nurse. She was kind. The consultant. There was no wait",
]


@pytest.mark.parametrize(("text", "secret", "tag"), PLANTED)
def test_every_planted_identifier_is_redacted(text: str, secret: str, tag: str) -> None:
    out = redact(text)
    assert secret not in out and tag in out
    assert redact(out) == out and leaks(out) == 0  # idempotent, nothing left to find
    assert leaks(text) >= 1


@pytest.mark.parametrize("text", CLEAN)
def test_text_without_identifiers_is_unchanged(text: str) -> None:
    assert redact(text) == text and leaks(text) == 0


def test_planted_identifiers_by_kind() -> None:
    """Over 100 generated identifiers of five kinds (bench/identifiers.py): every phone, e-mail,
    NHS number, postcode and full name (en_GB) is redacted; names from locales the lexicon was
    not made from are counted, not required (the bench reports them)."""
    pytest.importorskip("faker")
    from bench.identifiers import planted, run

    items = planted(20)
    assert len({p.kind for p in items}) == 6 and len(items) == 120
    r = run(20)
    for kind in ("phone", "email", "nhs number", "postcode", "name"):
        assert r["by_kind"][kind]["caught"] == 20, (kind, r["by_kind"][kind]["missed"])
    assert r["nhs_comments"] == 7908 and r["nhs_comments_changed"] <= 10  # few false positives


def test_first_name_lexicon_is_current() -> None:
    """first_names.txt is what model_build/name_lexicon.py writes from the pinned Faker."""
    pytest.importorskip("faker")
    from model_build.name_lexicon import lexicon_text
    from twolane.summaries.redact import LEXICON

    assert LEXICON.read_text(encoding="utf-8") == lexicon_text()


def test_representative_prefers_confident_and_diverse() -> None:
    texts = ["parking is too expensive", "parking is too expensive here", "no spaces to park at all",
             "car park barrier broken"]
    conf = [0.9, 0.89, 0.6, 0.5]
    picks = representative(texts, conf, 3)
    assert picks[0] == 0 and 1 not in picks[:2]  # the near-duplicate waits
    assert len(picks) == 3 and len(set(picks)) == 3
    assert representative(texts, conf, 0) == [] and representative([], [], 3) == []
    big = [f"comment {i} about food" for i in range(20_000)]
    assert len(representative(big, [0.5] * len(big), 12)) == 12  # bounded pool: quick


def test_requests_and_answer_parse() -> None:
    body = summary_request("Parking", 10, 4, ["a [phone] comment", "another"])
    user = body["messages"][1]["content"]
    assert body["messages"][0]["role"] == "system" and "1. a [phone] comment\n2. another" in user
    assert "10 comments, 4 negative" in user and body["temperature"] == 0.0 and body["max_tokens"] > 0
    q = quotes_request("Parking", 10, 4, ["a"], 3)
    assert "Which 3 comments" in q["messages"][1]["content"] and q["max_tokens"] > body["max_tokens"]
    assert parse_summary("Summary: Patients find parking hard.\nIt costs a lot.") == (
        "Patients find parking hard. It costs a lot.")
    assert parse_quotes('1. "a [phone] comment"\n- QUOTE [2]: another one here.\nPlease note\n'
                        '3) third one') == [(1, "a [phone] comment"), (2, "another one here"),
                                            (3, "third one")]
    assert completion_text({"choices": [{"message": {"content": "x"}}]}) == "x"
    with pytest.raises(ValueError):
        completion_text({"error": "boom"})


def test_grounding_keeps_verbatim_spans_only() -> None:
    sample = ["The car park  is always full by nine", "Staff were kind and helpful"]
    assert ground("car park is always full", 1, sample) == 0  # whitespace runs collapsed
    assert ground("Staff were kind", 1, sample) == 1  # cited the wrong comment: found in another
    assert ground("staff were kind", 2, sample) is None  # case differs: not verbatim
    assert ground("car park is never full", 1, sample) is None  # paraphrase: dropped
    assert ground("Staff were", 2, sample) is None  # too short to say anything


def test_llm_name() -> None:
    assert llm_name(None).endswith(".gguf")
    assert llm_name("/x/y/model.gguf") == "model.gguf" and llm_name("Qwen2.5-7B-Instruct") == "Qwen2.5-7B-Instruct"


def test_own_data_bundle_summaries_speak_its_taxonomy(spec_bundle: Path) -> None:
    """A team's own bundle (drug reviews, three-class sentiment): the themes are its own labels,
    no NHS label, no negative count (its scale has no known negative end), no NHS wording."""
    from spec_helpers import held_out

    from twolane.contract import CommentIn
    from twolane.predictors.instant import InstantPredictor
    from twolane.summaries.plan import plan_summaries, reportable

    predictor = InstantPredictor.from_bundle(spec_bundle)
    assert set(reportable(predictor)) <= set(predictor.labels) and "Labelling not possible" not in reportable(predictor)
    items = [CommentIn(comment_id=str(i), comment_text=text, context=ctx)
             for i, (text, ctx) in enumerate(held_out(60, seed=1))]
    plan, requests = plan_summaries(items, predictor, "test-llm", quotes_per_theme=2)
    assert plan.themes and requests
    assert all(t.theme in predictor.labels and t.negative is None for t in plan.themes)
    for body in requests:
        system, user = (m["content"] for m in body["messages"])
        assert "NHS" not in system and "atient" not in user and "negative" not in user
    nhs = summary_request("Parking", 10, 4, ["a"])  # the NHS wording is unchanged
    assert "NHS patient feedback" in nhs["messages"][0]["content"]
