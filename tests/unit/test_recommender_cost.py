"""Cost model and choice on crafted measurements (no servers): the arithmetic and the pick."""

from __future__ import annotations

import math

import pytest

from recommender.cost import (
    choose_instance,
    choose_lambda_memory,
    core_efficiency,
    lambda_latency_factor,
    load_prices,
)
from recommender.loadtest import Cell


def cell(cores: int, batch: int, conc: int, p95: float, thr: float, mean: float | None = None,
         rss: float = 300.0, errors: int = 0) -> Cell:
    m = mean if mean is not None else p95 * 0.8
    cpu_ms_per_comment = cores * 1000.0 / thr  # the cores were fully busy at this throughput
    return Cell("batch", cores, cores, batch, conc, m, p95, p95 * 1.1, m, thr, 50, errors, rss, 4,
                cpu_ms_per_comment, 0.1, (p95, p95), (thr, thr), 3, 0, [])


PRICES = {
    "sagemaker_instances": {
        "cheap.small": {"vcpus": 2, "memory_gib": 4, "gpu": None, "usd_per_hour": 0.10},
        "mid.large": {"vcpus": 4, "memory_gib": 8, "gpu": None, "usd_per_hour": 0.20},
        "gpu.big": {"vcpus": 4, "memory_gib": 16, "gpu": "G", "usd_per_hour": 1.00},
    },
    "gpu_speedup_assumption": {"note": "test", "G": 10.0},
    "lambda": load_prices()["lambda"],
}


def test_prices_file_is_complete() -> None:
    p = load_prices()
    assert p["as_of"] and p["source"] and p["region"]
    for name, spec in p["sagemaker_instances"].items():
        assert name.startswith("ml.") and spec["vcpus"] > 0 and spec["usd_per_hour"] > 0
    assert p["lambda"]["mb_per_vcpu"] == 1769 and p["lambda"]["usd_per_million_requests"] == 0.2
    sizes = p["lambda"]["memory_sizes_mb"]
    assert min(sizes) == 128 and max(sizes) == 3008


def test_core_efficiency_is_measured_from_1_and_2_core_runs() -> None:
    cells = [cell(1, 8, 1, 100, 100.0), cell(2, 8, 2, 100, 180.0)]
    e, basis = core_efficiency(cells)
    assert e == pytest.approx(0.8) and basis.startswith("measured")
    e, basis = core_efficiency([cell(1, 8, 1, 100, 100.0)])
    assert basis.startswith("assumed")


def test_cheapest_instance_that_meets_the_slo_is_chosen() -> None:
    # 2 cores: 200 comments/s at p95 300 ms; 1 core 100/s. e = 1.0 -> 4 vCPUs = 400/s.
    cells = [cell(1, 8, 1, 300, 100.0), cell(2, 8, 2, 300, 200.0)]
    ch = choose_instance(cells, slo_p95_ms=500, prices=PRICES)
    by = {c.name: c for c in ch.candidates}
    # $/M = $/h / (cps * 3600) * 1e6
    assert by["cheap.small"].usd_per_million == pytest.approx(0.10 / (200 * 3600) * 1e6)
    assert by["mid.large"].throughput_cps == pytest.approx(400.0)
    assert by["mid.large"].usd_per_million == pytest.approx(by["cheap.small"].usd_per_million)
    assert by["gpu.big"].assumed and by["gpu.big"].p95_ms == pytest.approx(30.0)
    assert by["gpu.big"].throughput_cps == pytest.approx(1000.0)
    # Equal cost for cheap.small and mid.large (linear scaling), equal p95: either is right
    assert ch.chosen is not None and ch.chosen.name in ("cheap.small", "mid.large")
    assert "meets" in ch.message and ch.chosen.name in ch.message


def test_slow_cpu_loses_to_gpu_when_only_gpu_meets_the_slo() -> None:
    cells = [cell(1, 8, 1, 800, 10.0), cell(2, 8, 2, 900, 18.0)]
    measured_only = choose_instance(cells, slo_p95_ms=500, prices=PRICES)
    assert measured_only.chosen is None  # the GPU rests on an assumption: never silently wins
    assert "not chosen without --allow-assumed" in measured_only.message
    ch = choose_instance(cells, slo_p95_ms=500, prices=PRICES, allow_assumed=True)
    assert ch.chosen is not None and ch.chosen.name == "gpu.big" and ch.chosen.assumed
    assert "ASSUMED GPU" in ch.message
    assert not {c.name: c for c in ch.candidates}["cheap.small"].meets_slo


def test_none_meets_the_slo_gives_a_clear_message() -> None:
    cells = [cell(1, 8, 1, 5000, 1.0), cell(2, 8, 2, 5200, 1.8)]
    ch = choose_instance(cells, slo_p95_ms=100, prices=PRICES)
    assert ch.chosen is None
    assert "no instance meets the p95 objective of 100 ms" in ch.message
    assert "left unchanged" in ch.message


def test_memory_too_small_rules_a_candidate_out() -> None:
    cells = [cell(1, 8, 1, 100, 100.0, rss=5000.0), cell(2, 8, 2, 100, 200.0, rss=5000.0)]
    ch = choose_instance(cells, slo_p95_ms=500, prices=PRICES)
    by = {c.name: c for c in ch.candidates}
    assert not by["cheap.small"].fits_memory and by["mid.large"].fits_memory
    assert ch.chosen is not None and ch.chosen.name == "mid.large"


def test_lambda_latency_scales_with_memory() -> None:
    assert lambda_latency_factor(1769, 1769, 1.5) == pytest.approx(1.0)
    assert lambda_latency_factor(884.5, 1769, 1.5) == pytest.approx(2.0)
    assert lambda_latency_factor(3538, 1769, 1.5) == pytest.approx(1 / 1.5)


def test_lambda_memory_choice_is_cheapest_under_slo() -> None:
    # 1 core: 100 ms mean / 120 ms p95 for 20 comments; 2 cores: 80 ms mean.
    # CPU time: 5 ms/comment x 20 = 100 ms per request on one core (= the wall mean); 2 threads
    # used 6 x 20 = 120 ms CPU in 80 ms wall (1.5 cores busy), so the speed-up 1.25 stands.
    one = Cell("instant", 1, 1, 20, 1, 100, 120, 130, 100, 200, 50, 0, 150, 4, 5.0, 0,
               (120, 120), (200, 200), 3, 0, [])
    two = Cell("instant", 2, 2, 20, 1, 80, 96, 100, 80, 250, 50, 0, 150, 4, 6.0, 0, (96, 96),
               (250, 250), 3, 0, [])
    ch = choose_lambda_memory([one, two], slo_p95_ms=300, prices=PRICES)
    assert ch.method["two_core_speedup"] == pytest.approx(1.25)
    by = {int(c.memory_mb): c for c in ch.candidates}
    assert not by[128].fits_memory  # 150 MB RSS
    assert by[512].p95_ms == pytest.approx(120 * 1769 / 512)  # 414 ms: misses 300
    assert not by[512].meets_slo and by[768].meets_slo
    # cost per million comments at 768 MB: billed ceil(100*1769/768) ms
    billed = math.ceil(100 * 1769 / 768)
    want = (billed / 1000 * 768 / 1024 * 0.0000166667 + 0.2e-6) * 1e6 / 20
    assert by[768].usd_per_million == pytest.approx(want)
    feasible = [c for c in ch.candidates if c.feasible]
    cheapest = min(c.usd_per_million for c in feasible)
    assert ch.chosen is not None and ch.chosen.usd_per_million <= cheapest * 1.02
    # CPU-bound up to 1769 MB, cost is flat (equal within rounding), so the fastest of the
    # equally cheap sizes wins; above it the 2nd vCPU helps by only 1.25x, so cost rises.
    assert int(ch.chosen.memory_mb) == 1769
    assert by[2048].usd_per_million > by[1769].usd_per_million * 1.05


def test_lambda_none_meets_slo() -> None:
    one = Cell("instant", 1, 1, 20, 1, 100, 120, 130, 100, 200, 50, 0, 150, 4, 1, 0, (120, 120),
               (200, 200), 3, 0, [])
    ch = choose_lambda_memory([one], slo_p95_ms=10, prices=PRICES)
    assert ch.chosen is None and "no memory size meets the p95 objective of 10 ms" in ch.message


def test_projection_uses_cpu_time_not_a_disturbed_wall_clock() -> None:
    """Other work on the machine halves the measured throughput; CPU time per comment is what
    the server itself needed, so capacity and efficiency come from it."""
    from recommender.cost import capacity_cps

    one = cell(1, 8, 1, 300, 100.0)  # 10 ms CPU per comment
    one.throughput_cps = 50.0  # wall clock: half the core went to someone else
    two = cell(2, 8, 2, 300, 150.0)  # 2 cores, 13.3 ms CPU per comment: e = 0.5
    assert capacity_cps(one) == pytest.approx(100.0)
    e, basis = core_efficiency([one, two])
    assert e == pytest.approx(0.5) and "CPU time" in basis
    ch = choose_instance([one, two], slo_p95_ms=500, prices=PRICES)
    by = {c.name: c for c in ch.candidates}
    assert by["cheap.small"].throughput_cps == pytest.approx(150.0)
    assert by["mid.large"].throughput_cps == pytest.approx(150.0 * 2.5 / 1.5)
    assert by["gpu.big"].throughput_cps == pytest.approx(1000.0)  # 1-core capacity x 10


def test_lambda_speedup_is_capped_by_cores_really_used() -> None:
    # The 2-thread run is 2x faster on the wall clock (the 1-core run was disturbed) but its
    # CPU time shows it kept only 1.1 cores busy: the 2nd vCPU is worth 1.1x, not 2x.
    one = Cell("instant", 1, 1, 20, 1, 100, 120, 130, 100, 200, 50, 0, 150, 4, 2.5, 0,
               (120, 120), (200, 200), 3, 0, [])
    two = Cell("instant", 2, 2, 20, 1, 50, 60, 70, 50, 400, 50, 0, 150, 4, 2.75, 0, (60, 60),
               (400, 400), 3, 0, [])
    ch = choose_lambda_memory([one, two], slo_p95_ms=1000, prices=PRICES)
    assert ch.method["two_core_speedup"] == pytest.approx(1.1)
    assert ch.method["work_ms_per_request_1vcpu"] == pytest.approx(50.0)  # 2.5 ms x 20 < 100 wall


def test_within_the_assumption_band_the_lower_hourly_price_wins() -> None:
    prices = {**PRICES, "sagemaker_instances": {
        "gpu.small": {"vcpus": 4, "memory_gib": 16, "gpu": "T", "usd_per_hour": 0.74},
        "gpu.big": {"vcpus": 4, "memory_gib": 16, "gpu": "A", "usd_per_hour": 1.41}},
        "gpu_speedup_assumption": {"T": 20.0, "A": 40.0}}  # gpu.big 5 % cheaper per comment
    cells = [cell(1, 8, 1, 300, 10.0)]
    ch = choose_instance(cells, slo_p95_ms=500, prices=prices, allow_assumed=True)
    by = {c.name: c for c in ch.candidates}
    assert by["gpu.big"].usd_per_million < by["gpu.small"].usd_per_million
    assert ch.chosen is not None and ch.chosen.name == "gpu.small"
    assert "lower hourly price" in ch.message
    prices["sagemaker_instances"]["gpu.big"]["usd_per_hour"] = 1.0  # now 32 % cheaper: wins
    assert choose_instance(cells, 500, prices, allow_assumed=True).chosen.name == "gpu.big"  # type: ignore[union-attr]


def test_lambda_work_is_the_smaller_of_wall_clock_and_cpu_time() -> None:
    # Quiet machine: the server's CPU time per request (9 ms, incl. its access log between
    # requests) exceeds the wall-clock mean (5 ms): the wall clock is the better bound.
    one = Cell("instant", 1, 1, 100, 1, 4.5, 7.5, 9, 5.0, 20000, 50, 0, 150, 4, 0.09, 0,
               (7.5, 7.5), (20000, 20000), 3, 0, [])
    ch = choose_lambda_memory([one], slo_p95_ms=1000, prices=PRICES)
    assert ch.method["work_ms_per_request_1vcpu"] == pytest.approx(5.0)
    assert {int(c.memory_mb): c for c in ch.candidates}[1769].p95_ms == pytest.approx(7.5)
