"""The LLM lane's pricing (recommender/llm.py): one short request per theme, priced at the
pattern's bounds from measured CPU rates and assumed GPU rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommender.cost import load_prices
from recommender.llm import (
    COMPLETION_TOKENS,
    CPU_MODEL,
    MAX_THEMES,
    PROMPT_TOKENS,
    llm_doc,
    seconds_per_request,
    themes_per_job,
)
from recommender.report import llm_html


def _engine_bench(tmp_path: Path, prompt_tps: float = 1000.0, completion_tps: float = 50.0) -> Path:
    rows = [{"name": CPU_MODEL, "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "extra_bufts": extra,
             "prompt_tokens_per_s": prompt_tps * (2 if extra else 1), "completion_tokens_per_s": completion_tps}
            for extra in (False, True)]
    path = tmp_path / "llm_engine.json"
    path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    return path


def _llm_bench(tmp_path: Path, themes: int = 28, comments: int = 1000) -> Path:
    path = tmp_path / "llm.json"
    path.write_text(json.dumps({"themes_reported": themes, "comments": comments}), encoding="utf-8")
    return path


def test_seconds_per_request_is_prompt_plus_generation() -> None:
    assert seconds_per_request(1000.0, 50.0) == pytest.approx(PROMPT_TOKENS / 1000 + COMPLETION_TOKENS / 50)
    assert seconds_per_request(1000.0, 50.0, 300, 40) == pytest.approx(0.3 + 0.8)


def test_one_request_per_theme_priced_from_the_measured_cpu_rates(tmp_path: Path) -> None:
    prices = load_prices()
    doc = llm_doc(50_000, 1, prices, measured_path=_llm_bench(tmp_path),
                  engine_path=_engine_bench(tmp_path))
    assert doc is not None
    assert doc["themes_per_job"] == 28 and doc["requests_per_job"] == 28  # one per theme
    cpu = doc["rows"][0]
    assert cpu["source"] == "measured" and cpu["engine"] == "llama.cpp"
    # the extra-buffer-types-off row (what the engine runs), not the faster "on" one
    assert cpu["s_per_request"] == pytest.approx(seconds_per_request(1000.0, 50.0), abs=1e-3)
    assert cpu["work_s"] == pytest.approx(28 * cpu["s_per_request"], abs=0.1)
    gpus = doc["rows"][1:]
    assert gpus and all(r["source"] == "ASSUMED" for r in gpus)
    for r in doc["rows"]:  # billed = (provisioning) + work + idle until scale-in; $ from the hour
        assert r["billed_s"] >= r["work_s"] and r["usd_per_job"] > 0
    # a GPU decodes 8 requests together: its work per job is well under the 135M CPU model's
    assert all(r["work_s"] < cpu["work_s"] for r in gpus)


def test_work_is_flat_in_the_job_size_beyond_the_themes(tmp_path: Path) -> None:
    prices = load_prices()
    kw = {"measured_path": _llm_bench(tmp_path), "engine_path": _engine_bench(tmp_path)}
    small, big = llm_doc(1000, 1, prices, **kw), llm_doc(1_000_000, 1, prices, **kw)
    assert small is not None and big is not None
    assert big["requests_per_job"] == small["requests_per_job"] == 28
    assert big["rows"][0]["work_s"] == small["rows"][0]["work_s"]
    assert llm_doc(100, 1, prices, **kw)["requests_per_job"] < 28  # type: ignore[index]


def test_without_bench_runs(tmp_path: Path) -> None:
    prices = load_prices()
    assert llm_doc(1000, 1, prices, engine_path=tmp_path / "none.json") is None
    doc = llm_doc(1000, 1, prices, measured_path=tmp_path / "none.json", engine_path=_engine_bench(tmp_path))
    assert doc is not None and doc["themes_per_job"] == MAX_THEMES and not doc["themes_measured"]
    assert themes_per_job(10, None) == MAX_THEMES


def test_report_text_names_the_request_pattern(tmp_path: Path) -> None:
    doc = llm_doc(50_000, 1, load_prices(), measured_path=_llm_bench(tmp_path),
                  engine_path=_engine_bench(tmp_path))
    html = llm_html(doc)
    assert "one short LLM request per theme, 28 in all" in html
    assert f"at most {PROMPT_TOKENS} prompt tokens" in html and f"at most {COMPLETION_TOKENS} tokens" in html

