"""The billing model against hand-computed cases (exact numbers), and the choice rules."""

from __future__ import annotations

import math

import pytest

from recommender.billing import (
    HOURS_PER_MONTH,
    WEEKS_PER_MONTH,
    AsyncEndpointHost,
    ShardedHost,
    Workload,
    async_job,
    choose,
    estimate,
    sharded_job,
)

# An async endpoint at $0.72/h (= $0.0002/s), 100 comments/s, 60 s wake, 300 s provisioning,
# 1 s container start, 960 s idle until scale-in, 900 s invocation timeout.
CPU = AsyncEndpointHost(name="ml.cpu", usd_per_hour=0.72, throughput_cps=100.0,
                        wake_delay_s=60.0, provision_s=300.0, container_start_s=1.0,
                        idle_s=960.0, max_processing_s=900.0)
# Lambda at 2048 MB (2 GB), $0.00001/GB-s, $0.0000002 per request, 50 comments/s,
# 3 s cold start (billed), 900 s limit, 10 at a time.
LAM = ShardedHost(name="lambda-2048MB", kind="lambda", memory_mb=2048,
                  usd_per_gb_second=0.00001, usd_per_request=0.0000002, throughput_cps=50.0,
                  cold_start_s=3.0, cold_billed_s=3.0, max_invocation_s=900.0,
                  max_concurrency=10, family="Lambda")


def test_async_job_from_zero_bills_provisioning_and_idle() -> None:
    job = async_job(CPU, 5000)
    # processing 5000 / 100 = 50 s; billed 300 + 1 + 50 + 960 = 1311 s; $0.0002/s
    assert job.processing_s == 50.0
    assert job.billed_s == 1311.0
    assert job.usd == pytest.approx(1311 * 0.0002)  # $0.2622
    # wait: 60 wake + 300 provisioning + 1 start + 50 processing = 411 s
    assert job.wait_s == 411.0
    assert job.usd_parts["idle until scale-in"] == pytest.approx(960 * 0.0002)
    assert job.fits


def test_async_job_without_billed_provisioning_and_over_the_timeout() -> None:
    host = AsyncEndpointHost(**{**CPU.__dict__, "bills_provisioning": False})
    assert async_job(host, 5000).billed_s == 1011.0
    big = async_job(CPU, 100_000)  # 1000 s > 900 s invocation timeout
    assert not big.fits and "900 s invocation timeout" in big.why_not


def test_async_job_is_sharded_and_scales_out_to_meet_the_wait() -> None:
    host = AsyncEndpointHost(**{**CPU.__dict__, "shard_size": 5000, "max_instances": 4})
    # 100,000 comments -> 20 invocations of 5,000 (50 s each: within the 900 s timeout).
    # One instance: 60 + 300 + 1 + 1000 = 1361 s > 900; two: 361 + 500 = 861 s -> 2 instances
    job = async_job(host, 100_000, max_wait_s=900)
    assert job.fits and job.shards == 20 and job.instances == 2
    assert job.processing_s == 500.0 and job.wait_s == 861.0
    # billed: 2 x (300 + 1 + 500 + 960) = 3522 instance-seconds at $0.0002/s = $0.7044
    assert job.billed_s == 3522.0
    assert job.usd == pytest.approx(0.7044)
    # a 600 s wait: 3 instances give 694 s, 4 (the most allowed) 611 s: still missed
    fast = async_job(host, 100_000, max_wait_s=600)
    assert fast.instances == 4 and fast.wait_s == pytest.approx(611.0)
    assert not estimate(host, Workload(100_000, 1, 600)).meets_wait
    # unsharded (shard_size 0) the whole job is one invocation: over the timeout
    assert not async_job(CPU, 100_000, max_wait_s=900).fits


def test_async_month_sparse_jobs_each_start_from_zero() -> None:
    w = Workload(comments_per_week=15_000, jobs_per_week=3, max_wait_s=900)
    e = estimate(CPU, w)
    assert w.comments_per_job == 5000
    assert e.usd_per_job == pytest.approx(0.2622)
    assert e.usd_per_month == pytest.approx(0.2622 * 3 * WEEKS_PER_MONTH)  # $3.4199
    assert e.usd_per_million == pytest.approx(e.usd_per_month / (15_000 * WEEKS_PER_MONTH) * 1e6)
    assert e.usd_per_million == pytest.approx(0.2622 / 5000 * 1e6)  # $52.44
    assert e.meets_wait and e.feasible and "from zero" in e.regime


def test_async_month_dense_jobs_keep_the_instance_up() -> None:
    # 1,000 jobs a week: one every 604.8 s, shorter than the 1,321 s cycle -> always up.
    w = Workload(comments_per_week=1_000_000, jobs_per_week=1000, max_wait_s=900)
    e = estimate(CPU, w)
    assert e.usd_per_month == pytest.approx(HOURS_PER_MONTH * 0.72)  # $525.96
    assert e.wait_s == 10.0  # 1000 comments / 100 per s, no wake-up
    assert "stays up" in e.regime


def test_lambda_job_one_shard_when_it_meets_the_wait() -> None:
    job = sharded_job(LAM, 5000, max_wait_s=900)
    # one shard: 5000 / 50 = 100 s; wait 3 + 100 = 103 s
    assert job.shards == 1 and job.processing_s == 100.0 and job.wait_s == 103.0
    # billed (100 + 3) s x 2 GB x $0.00001 + $0.0000002 = $0.0020602
    assert job.usd == pytest.approx(103 * 2 * 0.00001 + 0.0000002)


def test_lambda_job_is_sharded_to_meet_the_wait() -> None:
    # 5000 comments, 60 s wanted: budget 57 s -> ceil(5000 / (50 x 57)) = 2 shards of 2500
    job = sharded_job(LAM, 5000, max_wait_s=60)
    assert job.shards == 2 and job.processing_s == 50.0 and job.wait_s == 53.0
    assert job.usd == pytest.approx(2 * (50 + 3) * 2 * 0.00001 + 2 * 0.0000002)  # $0.0021204


def test_lambda_job_respects_the_time_limit_and_concurrency() -> None:
    # 100,000 comments: one invocation holds at most 50 x 900 x 0.8 = 36,000 -> 3 shards
    job = sharded_job(LAM, 100_000, max_wait_s=10_000)
    assert job.shards == 3 and job.processing_s == pytest.approx(33_334 / 50)
    # a 30 s wait would need ceil(100000 / (50 x 27)) = 75 shards; 10 run at a time, so the
    # fan-out stops at 10 (more waves would not be faster) and the wait is missed
    fast = sharded_job(LAM, 100_000, max_wait_s=30)
    assert fast.shards == 10 and fast.wait_s == pytest.approx(3 + 10_000 / 50)
    assert not estimate(LAM, Workload(100_000, 1, 30)).meets_wait


def test_serverless_bills_data_and_the_waiting_caller_not_the_cold_start() -> None:
    host = ShardedHost(name="serverless-1024MB", kind="serverless", memory_mb=1024,
                       usd_per_gb_second=0.00002, usd_per_request=0.0, throughput_cps=40.0,
                       cold_start_s=10.0, cold_billed_s=0.0, max_invocation_s=60.0,
                       max_concurrency=200, max_comments_per_invocation=1000,
                       usd_per_gb_data=0.016, bytes_per_comment=500.0, caller_gb=0.25,
                       caller_usd_per_gb_second=0.00001, assumed=True)
    job = sharded_job(host, 4000, max_wait_s=900)
    # per invocation: min(40 x 60 x 0.8 = 1920, payload 1000) = 1000 -> 4 shards of 25 s
    assert job.shards == 4 and job.processing_s == 25.0 and job.wait_s == 35.0
    compute = 4 * 25 * 1.0 * 0.00002  # $0.002
    data = 4000 * 500 / 1e9 * 0.016  # $0.000032
    caller = 4 * (10 + 25) * 0.25 * 0.00001  # $0.000035
    assert job.usd_parts == pytest.approx({"compute": compute, "requests": 0.0,
                                           "data processed": data,
                                           "waiting caller (Lambda)": caller})
    assert job.usd == pytest.approx(compute + data + caller)


def test_choice_is_cheapest_feasible_and_assumed_hosts_need_the_flag() -> None:
    w = Workload(comments_per_week=15_000, jobs_per_week=3, max_wait_s=900)
    gpu = AsyncEndpointHost(**{**CPU.__dict__, "name": "ml.gpu", "assumed": True,
                               "usd_per_hour": 0.001, "assumptions": ("GPU speed-up (assumed)",)})
    ests = [estimate(h, w) for h in (CPU, LAM, gpu)]
    lam = next(e for e in ests if e.host == LAM.name)
    assert lam.usd_per_month < next(e for e in ests if e.host == "ml.cpu").usd_per_month
    chosen = choose(ests)
    assert chosen is not None and chosen.host == LAM.name  # gpu is cheaper but assumed
    assert choose(ests, allow_assumed=True).host == "ml.gpu"  # type: ignore[union-attr]
    assert choose([e for e in ests if e.host == "ml.cpu"], allow_assumed=False).host == "ml.cpu"  # type: ignore[union-attr]


def test_workload_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Workload(0, 1)
    assert Workload(5000, 3).comments_per_job == math.ceil(5000 / 3)
