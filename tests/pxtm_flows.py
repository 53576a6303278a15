"""pxtextmining's client flows as its users run them, parameterised by where they point.

Each flow does what one published client does (see SPEC.md for the sources) and returns what
that client would end up holding. `http` is anything with requests' `get`/`post` (the
`requests` module itself, a `requests.Session`, or a session whose adapter hands requests to a
Lambda handler), so the same code runs against `twolane up`, a bare uvicorn and API Gateway
events. R flows are re-expressed as the exact bytes and headers httr sends (captured from R
4.2.2 / httr 1.4.5 / jsonlite 1.8.4, see r_capture/).

Checks (`check_*`) assert the shapes pxtextmining's clients read.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

LNP = "Labelling not possible"
R_ACCEPT = "application/json, text/xml, application/xml, */*"
R_UA = "libcurl/7.88.1 r-curl/5.0.0 httr/1.4.5"

# ---------------------------------------------------------------------------------- inputs
DOCS_ITEMS = [  # the shape of the examples in quick_API.md / slow_API.md / docker_README.md
    {"comment_id": "1", "comment_text": "First comment here. The nurse was lovely.",
     "question_type": "what_good"},
    {"comment_id": "2", "comment_text": "Second comment here. The ward was too cold.",
     "question_type": "could_improve"},
    {"comment_id": "3", "comment_text": "", "question_type": "nonspecific"},
]
QUICK_DOCS_ITEMS = [{k: v for k, v in i.items() if k != "question_type"} for i in DOCS_ITEMS]
API_TEST_ITEMS = [  # the shape of pxtextmining tests/functional/test_api.py's items
    {"comment_id": "12345", "comment_text": "Everything was fine"},
    {"comment_id": "B1", "comment_text": "", "question_type": "nonspecific"},
    {"comment_id": "B2", "comment_text": "Finding a parking space took ages"},
    {"comment_id": "4", "comment_text": "The session was really helpful"},
    {"comment_id": "5", "comment_text": "1234567"},
]

# Bodies httr sends (r_capture/captured.jsonl), byte for byte.
R_QUICK_DOCS_BODY = (
    '[{"comment_id":"1","comment_text":"First comment here. The nurse was lovely."},'
    '{"comment_id":"2","comment_text":"Second comment here. The ward was too cold."},'
    '{"comment_id":"3","comment_text":""}]'
)
R_QUICK_NUMERIC_NA_BODY = (  # data.frame(comment_id = c(1, 2, 3), comment_text = c("...", NA, ""))
    '[{"comment_id":1,"comment_text":"Nurse was great."},{"comment_id":2},'
    '{"comment_id":3,"comment_text":""}]'
)
R_QUICK_DASH_BODY = (  # experiencesdashboard api_pred(): data frame, NA text -> key dropped
    '[{"comment_id":"1","comment_text":"Nurse was great.","question_type":"what_good"},'
    '{"comment_id":"2","question_type":"could_improve"}]'
)
R_SLOW_DOCS_BODY = (
    '[{"comment_id":"1","comment_text":"First comment here. The nurse was lovely.",'
    '"question_type":"what_good"},{"comment_id":"2","comment_text":"This is the second comment. '
    'The waiting room was cold.","question_type":"could_improve"},{"comment_id":"3",'
    '"comment_text":"","question_type":"nonspecific"}]'
)
R_SLOW_DASH_BODY = (  # experiencesdashboard get_api_pred_url(): purrr::array_tree, NA -> null
    '[{"comment_id":"1","comment_text":"Nurse was great.","question_type":"what_good"},'
    '{"comment_id":"2","comment_text":null,"question_type":"could_improve"}]'
)

# docker data_in files
DATA_IN_FILE_01 = json.dumps([  # the shape of docker_data/data_in/file_01.json
    {"comment_id": "1", "comment_text": "The receptionist was rude to me",
     "question_type": "what_good"},
    {"comment_id": "2", "comment_text": "The waiting room was cold.", "question_type": "could_improve"},
    {"comment_id": "3", "comment_text": "", "question_type": "nonspecific"},
    {"comment_id": "4", "comment_text": "Many thanks to everyone", "question_type": "nonspecific"},
], indent=2)
DATA_IN_NAN = (  # the shape of pxtextmining's data_in/file_02.json: Python json.dumps, NaN texts
    '[{"comment_id": "T1 - Q1", "comment_text": "Did not answer", "question_type": "nonspecific"}, '
    '{"comment_id": "T2 - Q1", "comment_text": "The driver was early and very kind.", '
    '"question_type": "nonspecific"}, '
    '{"comment_id": "T3 - Q1", "comment_text": NaN, "question_type": "nonspecific"}, '
    '{"comment_id": "T4 - Q2", "comment_text": "Help with forms.", "question_type": "what_good"}, '
    '{"comment_id": "T5 - Q2", "comment_text": NaN, "question_type": "could_improve"}]'
)
DATA_IN_R_MISSING_KEYS = """[
  {
    "comment_id": "1",
    "comment_text": "Nurse was great.",
    "question_type": "what_good"
  },
  {
    "comment_id": "2",
    "question_type": "could_improve"
  },
  {
    "comment_id": "3",
    "comment_text": "",
    "question_type": "nonspecific"
  },
  {
    "comment_id": "4",
    "comment_text": "Food was cold",
    "question_type": "nonspecific"
  }
]
"""  # write(toJSON(df, pretty = TRUE), ...) with an NA text (r_capture/data_in_df_R.json)
DATA_IN_R_DOCS = json.dumps([R_SLOW_DOCS_BODY])  # docker_README step 3 literally: toJSON of JSON


# ---------------------------------------------------------------------------------- quick API
def quick_docs_python(http: Any, url: str) -> list[dict[str, Any]]:
    """quick_API.md, Python: post the list, read the JSON."""
    response = http.post(f"{url}/predict_multilabel", json=QUICK_DOCS_ITEMS)
    assert response.status_code == 200, response.text
    return response.json()


def quick_api_tests(http: Any, url: str) -> None:
    """pxtextmining tests/functional/test_api.py, over HTTP."""
    response = http.get(f"{url}/")
    assert response.status_code == 200
    assert response.json() == {"test": "Hello"}
    body = http.post(f"{url}/predict_multilabel", json=API_TEST_ITEMS).json()
    assert len(API_TEST_ITEMS) == len(body)
    assert isinstance(body[0]["labels"], list)
    dup = [{"comment_id": "1", "comment_text": "Everything was fine"}] * 2
    assert http.post(f"{url}/predict_multilabel", json=dup).status_code != 200


def quick_streamlit(http: Any, url: str, text: str, q_type: str) -> list[str]:
    """pxtextmining_api_demo app/main.py: one comment with a question type, labels of item 0."""
    text_data = [{"comment_id": "1", "comment_text": text, "question_type": q_type}]
    response = http.post(f"{url}/predict_multilabel", json=text_data)
    return response.json()[0]["labels"]


def _r_post(http: Any, url: str, body: str, content_type: str | None,
            params: dict[str, str] | None = None) -> Any:
    headers = {"Accept": R_ACCEPT, "User-Agent": R_UA}
    if content_type:
        headers["Content-Type"] = content_type
    return http.post(url, params=params, data=body.encode("utf-8"), headers=headers)


def quick_r(http: Any, url: str, body: str) -> list[dict[str, Any]]:
    """quick_API.md R / experiencesdashboard api_pred(): POST(url, body, encode = "json",
    add_headers("Content-Type" = "application/json")); fromJSON(content(r, "text"))."""
    r = _r_post(http, f"{url}/predict_multilabel", body, "application/json")
    assert r.status_code == 200, r.text  # api_pred() stop()s otherwise
    return json.loads(r.content.decode("utf-8"))


# ---------------------------------------------------------------------------------- slow API
def _poll(http: Any, results_url: str, timeout_s: float, every_s: float) -> Any:
    """The docs' loop: GET until 200 (their loop treats every other status as 'not ready'; this
    one gives up on anything but 202 so a test fails instead of spinning)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.get(results_url)
        if r.status_code == 200:
            return r
        assert r.status_code == 202, (r.status_code, r.text)
        assert time.monotonic() < deadline, "results not ready in time"
        time.sleep(every_s)


def slow_docs_python(http: Any, start_url: str, api_key: str, target: str = "ms",
                     items: list[dict[str, Any]] | None = None, timeout_s: float = 300,
                     every_s: float = 0.5) -> tuple[str, list[dict[str, Any]]]:
    """slow_API.md, Python: params code/target, 202 + results URL in response.text, poll."""
    params_dict = {"code": api_key, "target": target}
    response = http.post(start_url, params=params_dict, json=items or DOCS_ITEMS)
    assert response.status_code == 202, (response.status_code, response.text)
    results_url = response.text
    final_labels = _poll(http, results_url, timeout_s, every_s).json()
    return results_url, final_labels


def slow_docs_r(http: Any, start_url: str, api_key: str, target: str = "ms",
                timeout_s: float = 300, every_s: float = 0.5) -> tuple[str, list[dict[str, Any]]]:
    """slow_API.md, R: a character body and encode = "json" -> no Content-Type header at all."""
    response = _r_post(http, start_url, R_SLOW_DOCS_BODY, None, {"code": api_key, "target": target})
    assert response.status_code == 202, (response.status_code, response.text)
    results_url = response.content.decode("utf-8")  # content(response, as = "text")
    r = _poll(http, results_url, timeout_s, every_s)
    return results_url, json.loads(r.content.decode("utf-8"))


def slow_dashboard_r(http: Any, start_url: str, api_key: str, target: str = "ms",
                     timeout_s: float = 300, every_s: float = 0.5) -> list[dict[str, Any]]:
    """experiencesdashboard get_api_pred_url() then get_pred_from_url() until not "Busy"."""
    r = _r_post(http, start_url, R_SLOW_DASH_BODY, "application/json",
                {"code": api_key, "target": target})
    assert r.status_code in (200, 202), r.status_code  # else stop(http_status(r)$message)
    results_url = r.content.decode("utf-8")
    got = _poll(http, results_url, timeout_s, every_s)
    return json.loads(got.content.decode("utf-8"))


# ---------------------------------------------------------------------------------- docker
def docker_flow(put: Callable[[str, bytes], None], get: Callable[[str], bytes | None],
                name: str, data_in: str, timeout_s: float = 120, every_s: float = 0.2) -> list[dict[str, Any]]:
    """docker_README: data_in/<name> in, data_out/<name> out (here: whatever folder pair the
    caller maps them to, e.g. the drop folder's inbox and outbox)."""
    put(name, data_in.encode("utf-8"))
    deadline = time.monotonic() + timeout_s
    while (out := get(name)) is None:
        assert time.monotonic() < deadline, f"no data_out/{name} in time"
        time.sleep(every_s)
    return json.loads(out)


# ---------------------------------------------------------------------------------- checks
def _is_sentiment(v: Any) -> bool:
    return v == LNP or (isinstance(v, (int, float)) and not isinstance(v, bool)
                        and not math.isnan(v) and v in (1, 2, 3, 4, 5))


def check_quick(items: list[dict[str, Any]], response: list[dict[str, Any]]) -> None:
    """[{comment_id, labels}] in input order, ids as strings, nothing else (no text echoed)."""
    assert [r["comment_id"] for r in response] == [str(i["comment_id"]) for i in items]
    for item, r in zip(items, response, strict=True):
        assert list(r) == ["comment_id", "labels"], r
        assert isinstance(r["labels"], list) and r["labels"], r
        if not str(item.get("comment_text") or "").strip():
            assert r["labels"] == [LNP]


def check_px_results(items: list[dict[str, Any]], target: str, results: list[dict[str, Any]]) -> None:
    """docker data_out / slow API results: key order comment_id, sentiment, labels (per target),
    input order, sentiment 1..5 or LNP, LNP exactly for missing/null/NaN/blank text."""
    keys = ["comment_id"] + (["sentiment"] if "s" in target else []) + (["labels"] if "m" in target else [])
    assert [r["comment_id"] for r in results] == [str(i["comment_id"]) for i in items]
    for item, r in zip(items, results, strict=True):
        assert list(r) == keys, r
        text = item.get("comment_text")
        blank = text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip()
        if "s" in target:
            assert _is_sentiment(r["sentiment"]), r
            assert (r["sentiment"] == LNP) == blank, (item, r)
        if "m" in target:
            assert isinstance(r["labels"], list) and r["labels"], r
            if blank:
                assert r["labels"] == [LNP]
