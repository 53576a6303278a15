"""The LLM lane's pure parts: redaction on a planted set, points (clustering, labels, quotes),
the summary checks, the request and its answer parse (no LLM needed); and the plan of a team's
own bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from twolane.summaries.checks import vocabulary, withheld_because
from twolane.summaries.embed import words_vectors
from twolane.summaries.plan import LLM_OFF, OFF_REASON, Plan, ThemePlan, assemble, llm_name
from twolane.summaries.points import find_points, sample_of
from twolane.summaries.prompt import completion_text, parse_summary, summary_request
from twolane.summaries.redact import leaks, redact
from twolane.summaries.schemas import Point, Quote

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


PARKING = ["parking is far too expensive here", "the parking charges are too expensive",
           "expensive parking, twelve pounds a day", "no parking spaces at all in the morning",
           "could not find a parking space anywhere", "drove round for a space for an hour",
           "parking spaces are always full", "the car park barrier was broken",
           "car park barrier broken again", "barrier at the car park stuck"]


def test_points_are_groups_in_size_order_with_central_quotes() -> None:
    x = words_vectors(PARKING)
    conf = [0.9] * len(PARKING)
    groups = find_points(x, PARKING, conf, 4, "Parking")
    assert groups and len(groups) <= 4
    sizes = [len(g.members) for g in groups]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) <= len(PARKING)
    for g in groups:
        assert g.central in g.members and g.label and "parking" not in g.label.split(", ")
    again = find_points(x, PARKING, conf, 4, "Parking")  # deterministic
    assert again == groups
    assert find_points(x[:0], [], [], 4) == [] and len(find_points(x[:1], PARKING[:1], [1.0], 4)) == 1


def test_sample_is_bounded_and_fixed() -> None:
    assert sample_of(5, 80) == [0, 1, 2, 3, 4]
    s = sample_of(50_000, 80)
    assert len(s) == 80 and s == sorted(s) and s == sample_of(50_000, 80) and len(set(s)) == 80


KNOWN = vocabulary(PARKING + ["Parking"])


@pytest.mark.parametrize(("text", "reason"), [
    ("Parking is too expensive and the car park barrier is broken.", None),
    ("Parking is expensive. Spaces are full. The barrier is broken.", "more than 2 sentences"),
    ("Parking is too expensive and the car park barrier is", "does not end a sentence"),
    ("Parking is too expensive, parking is too expensive.", "repeats a run of 4 words"),
    ("Of 10 comments, 7 say parking is too expensive.", "not one of the theme's counts"),
    ("Patients love the wonderful friendly doctors and delicious food.", "words not in the comments"),
    (" ".join(["parking"] * 51) + ".", "more than 50 words"),
    ("", "the LLM wrote nothing"),
])
def test_summary_checks_name_what_failed(text: str, reason: str | None) -> None:
    got = withheld_because(text, counts={10, 4}, comments=10, negative=4, known=KNOWN, tone=None)
    assert got == reason if reason is None else reason in (got or "")


def test_summary_contradicting_its_counts_is_withheld() -> None:
    kw = {"counts": {10, 8, 1}, "comments": 10, "known": KNOWN}
    praise = "Parking is expensive."
    assert "reads positive" in (withheld_because(praise, negative=8, tone=lambda _: 1, **kw) or "")
    assert "reads negative" in (withheld_because(praise, negative=1, tone=lambda _: 5, **kw) or "")
    assert withheld_because(praise, negative=5, tone=lambda _: 5, **kw) is None
    assert withheld_because(praise, negative=None, tone=lambda _: 1, **kw) is None  # own scale


def _plan(llm: str = "m.gguf") -> Plan:
    pt = Point(point="expensive", comments=6, negative=5, quote=Quote(comment_id="1", text=PARKING[0]))
    tp = ThemePlan(theme="Parking", comments=10, negative=8, sampled=10, points=[pt], other=4,
                   words=sorted(KNOWN), summary_shard=None if llm == LLM_OFF else 0)
    return Plan(model_version="v", llm=llm, points_by="words", themes=[tp])


def test_assemble_prints_only_what_passes_and_says_why_not() -> None:
    def chat(text: str) -> dict:
        return {"choices": [{"message": {"content": text}}]}

    ok = assemble(_plan(), [chat('{"summary": "Parking is too expensive."}')], [None], lambda _: 5)
    assert ok[0].summary == "Parking is too expensive." and ok[0].withheld is None
    assert ok[0].points[0].quote.text == PARKING[0]
    bad = assemble(_plan(), [chat("Parking parking parking parking parking parking parking")])
    assert bad[0].summary is None and "repeats" in (bad[0].withheld or "")
    failed = assemble(_plan(), [None], ["container exited (code -11); gave up after 2 attempt(s)"])
    assert failed[0].summary is None and failed[0].withheld.startswith("the LLM failed: container")
    assert failed[0].points and failed[0].comments == 10  # everything but the prose is kept
    nonsense = assemble(_plan(), [{"error": "x"}])
    assert nonsense[0].withheld == "the LLM's answer could not be read"
    off = assemble(_plan(LLM_OFF), [])
    assert off[0].summary is None and off[0].withheld == OFF_REASON


def test_request_and_answer_parse() -> None:
    body = summary_request("Parking", 10, 4, [("expensive, charges", 6, 5), ("barrier", 3, 1)])
    user = body["messages"][1]["content"]
    assert "- expensive, charges: 6 comments, 5 negative" in user and "10 comments, 4 negative" in user
    assert body["temperature"] == 0.0 and body["max_tokens"] > 0
    assert body["response_format"]["type"] == "json_object"
    assert body["response_format"]["schema"]["properties"]["summary"]["type"] == "string"
    assert parse_summary('{"summary": "Parking is hard."}') == "Parking is hard."
    assert parse_summary("Summary: Patients find parking hard.\nIt costs a lot.") == (
        "Patients find parking hard. It costs a lot.")
    assert completion_text({"choices": [{"message": {"content": "x"}}]}) == "x"
    with pytest.raises(ValueError):
        completion_text({"error": "boom"})


def test_llm_name() -> None:
    assert llm_name(None).endswith(".gguf") and llm_name("none") == LLM_OFF
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
    plan, requests = plan_summaries(items, predictor, "test-llm", points_per_theme=3)
    assert plan.themes and requests and plan.points_by == "words"
    assert all(t.theme in predictor.labels and t.negative is None for t in plan.themes)
    assert all(p.negative is None for t in plan.themes for p in t.points)
    for body in requests:
        system, user = (m["content"] for m in body["messages"])
        assert "NHS" not in system and "atient" not in user and "negative" not in user
    nhs = summary_request("Parking", 10, 4, [("a", 1, 1)])  # the NHS wording is unchanged
    assert "NHS patient feedback" in nhs["messages"][0]["content"]
