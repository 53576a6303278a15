"""The recommender end to end on small real bundles: real servers (uvicorn API, batch container)
on free 127.0.0.1 ports, a tiny sweep (1 configuration, a few requests), the choice, the report
files and the config update through infra.config's validation (on a copy of the config files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infra.config import CONFIG_DIR, ConfigError, load_config
from recommender.loadtest import Sweep, make_bodies, payload_texts
from recommender.run import run, update_configs

TINY = Sweep(cores=[1], batch_sizes=[4], concurrency=[1], requests=6, max_seconds=10.0,
             warmup=1, repeats=1)


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    for env in ("dev", "prod"):
        shutil.copy(CONFIG_DIR / f"{env}.json", d / f"{env}.json")
    return d


def test_payloads_are_real_comments() -> None:
    texts = payload_texts(50)
    assert len(texts) == 50 and all(t.strip() for _, t in texts)
    bodies = make_bodies("instant", texts, 4, count=3)
    items = [json.loads(b)["items"] for b in bodies]
    assert all(len(i) == 4 for i in items) and items[0] != items[1]


def test_recommend_end_to_end(tmp_path: Path, config_dir: Path, instant_bundle: Path,
                              batch_bundle: Path) -> None:
    out = tmp_path / "report"
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nother\n<!-- recommend:start -->\nOLD-SECTION\n"
                       "<!-- recommend:end -->\nafter\n")
    html = run(lane="both", slo_p95_ms=5000, out=out, envs=("dev",), results_md=results,
               sweeps={"instant": TINY, "batch": TINY},
               bundles={"instant": instant_bundle, "batch": batch_bundle},
               config_dir=config_dir, log=lambda s: None)
    assert html == out / "report.html" and html.is_file()
    for png in ("instant-latency-throughput.png", "instant-cost.png",
                "batch-latency-throughput.png", "batch-cost.png"):
        assert (out / png).stat().st_size > 5000
    doc = json.loads((out / "report.json").read_text())
    for lane in ("instant", "batch"):
        cells = doc["lanes"][lane]["result"]["cells"]
        assert len(cells) == 1
        c = cells[0]
        assert c["errors"] == 0 and c["requests_ok"] == 6 and c["timed_out_repeats"] == 0
        assert 0 < c["p50_ms"] <= c["p95_ms"] <= c["p99_ms"] < 5000
        assert c["throughput_cps"] > 1 and 20 < c["rss_peak_mb"] < 4000
        assert c["cpu_ms_per_comment"] > 0
    inst, batch = doc["lanes"]["instant"]["choice"], doc["lanes"]["batch"]["choice"]
    assert inst["chosen"] is not None and batch["chosen"] is not None  # 5 s is generous
    text = html.read_text()
    assert inst["message"] in text and batch["message"] in text
    assert "What was measured" in text and f"{doc['wall_s']:.0f} s" in text
    # The dev config now holds the choice, validated by infra.config; prod untouched.
    cfg = load_config("dev", config_dir)
    assert cfg.instant.lambda_memory_mb == int(inst["chosen"]["memory_mb"])
    assert cfg.batch.instance_type == batch["chosen"]["name"]
    assert doc["config_changes"][0]["env"] == "dev"
    assert load_config("prod", config_dir) == load_config("prod", CONFIG_DIR)
    md = results.read_text()
    assert md.startswith("# Results\n\nother\n") and md.endswith("after\n")
    assert "OLD-SECTION" not in md and inst["message"] in md and md.count("recommend:start") == 1


def test_config_update_is_validated(config_dir: Path) -> None:
    new_mb = load_config("prod", config_dir).instant.lambda_memory_mb + 256
    changes = update_configs({"instant.lambda_memory_mb": new_mb,
                              "batch.instance_type": "ml.c6i.xlarge"}, ["prod"], config_dir)
    assert f"+    \"lambda_memory_mb\": {new_mb}," in changes[0]["diff"]
    assert "+    \"instance_type\": \"ml.c6i.xlarge\"" in changes[0]["diff"]
    assert load_config("prod", config_dir).instant.lambda_memory_mb == new_mb
    before = (config_dir / "prod.json").read_text()
    with pytest.raises(ConfigError, match="lambda_memory_mb"):
        update_configs({"instant.lambda_memory_mb": 50}, ["prod"], config_dir)
    with pytest.raises(ConfigError, match="instance_type"):
        update_configs({"batch.instance_type": "c6i.xlarge"}, ["prod"], config_dir)
    assert (config_dir / "prod.json").read_text() == before  # a rejected change writes nothing


def test_workload_billing_from_reused_measurements(tmp_path: Path, config_dir: Path) -> None:
    """The committed report's measurements, billed for the NHS workload and 100x it: hosts,
    cost per job / month / million, wait, crossing charts, and batch.host in the config."""
    from recommender.billing import Workload

    out = tmp_path / "report"
    committed = Path(__file__).resolve().parents[2] / "bench" / "recommend" / "report.json"
    reused = tmp_path / "measured.json"
    shutil.copy(committed, reused)
    html = run(lane="both", out=out, envs=("dev",), config_dir=config_dir, log=lambda s: None,
               workload=Workload(5000, 3, 900), compare_scale=100, reuse=reused,
               results_md=tmp_path / "RESULTS.md")
    doc = json.loads((out / "report.json").read_text())
    bh = doc["batch_hosts"]
    assert [w["workload"]["comments_per_week"] for w in bh["workloads"]] == [5000, 500000]
    for w in bh["workloads"]:
        chosen = w["chosen"]
        assert chosen is not None and chosen["feasible"] and not chosen["assumed"]
        assert chosen["wait_s"] <= 900 and chosen["usd_per_job"] > 0
        assert chosen["usd_per_month"] == pytest.approx(
            chosen["usd_per_job"] * 3 * 365.25 / 12 / 7)
        kinds = {e["kind"] for e in w["estimates"]}
        assert kinds == {"async_endpoint", "lambda", "serverless"}
        # every GPU and Serverless row says it rests on an assumption
        for e in w["estimates"]:
            if e["kind"] == "serverless" or "GPU" in e["family"]:
                assert e["assumed"] and e["assumptions"]
    nhs = bh["workloads"][0]
    gpu = next(e for e in nhs["estimates"] if e["host"] == "ml.g4dn.xlarge")
    # from zero, a GPU job is billed for minutes whatever its size
    assert gpu["job"]["billed_s"] > 15 * 60 and gpu["usd_per_million"] > 10
    for png in (bh["plots"]["cost"], bh["plots"]["wait"]):
        assert (out / png).stat().st_size > 5000
    assert "Inputs of the billing model" in html.read_text()
    assert nhs["message"] in (tmp_path / "RESULTS.md").read_text()
    # The config takes the chosen host's deploy fields (a host infra/ can deploy: the async
    # endpoint or the Lambda fan-out), so `cdk deploy` builds what was billed.
    cfg = load_config("dev", config_dir)
    deploy = nhs["chosen"]["deploy"]
    assert deploy and cfg.batch.host == deploy["host"]
    for field, value in deploy.items():
        assert getattr(cfg.batch, field) == value
    # 100x the volume: the same wait needs the job fanned out (or more instances)
    big = bh["workloads"][1]["chosen"]
    assert big["job"]["shards"] > 1 or big["job"]["instances"] > 1
    assert [c["max_wait_s"] for c in bh["sweep"]["crossings_by_wait"]] == [900, 4 * 3600, 86400]


def test_batch_host_is_validated(config_dir: Path) -> None:
    update_configs({"batch.host": "serverless"}, ["dev"], config_dir)
    assert load_config("dev", config_dir).batch.host == "serverless"
    with pytest.raises(ConfigError, match="batch.host"):
        update_configs({"batch.host": "gpu-box"}, ["dev"], config_dir)
