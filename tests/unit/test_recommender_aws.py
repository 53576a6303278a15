"""AWS mode: every call's shape is checked against botocore's service model (Stubber validates
parameters and responses); the parsing and the choice run on the stubbed answers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from recommender.aws import (
    ir_choice,
    ir_job_request,
    ir_job_steps,
    lambda_choice,
    lambda_memory_sweep,
    parse_report_line,
    start_ir_job,
    wait_ir_job,
)
from recommender.cost import load_prices

NOW = datetime(2025, 1, 1, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/ir"
PRICES = load_prices()


def sm_client():
    return boto3.client("sagemaker", region_name="eu-west-2", aws_access_key_id="x",
                        aws_secret_access_key="x")


def bench(itype: str, latency: int, per_minute: int, cost_h: float) -> dict:
    return {"Metrics": {"CostPerHour": cost_h, "CostPerInference": 0.0001,
                        "MaxInvocations": per_minute, "ModelLatency": latency,
                        "CpuUtilization": 50.0, "MemoryUtilization": 20.0},
            "EndpointConfiguration": {"EndpointName": f"ep-{itype}", "VariantName": "v",
                                      "InstanceType": itype, "InitialInstanceCount": 1},
            "ModelConfiguration": {}}


@pytest.mark.parametrize("job_type", ["Default", "Advanced"])
def test_inference_recommender_job_shapes(job_type: str) -> None:
    sm = sm_client()
    req = ir_job_request("twolane-job", ROLE, "twolane-batch", 750.4, "s3://b/payload.tar.gz",
                         ["ml.c6i.xlarge", "ml.g4dn.xlarge"], job_type=job_type)
    if job_type == "Advanced":
        assert req["StoppingConditions"]["ModelLatencyThresholds"] == [
            {"Percentile": "P95", "ValueInMilliseconds": 751}]
        assert req["InputConfig"]["TrafficPattern"]["TrafficType"] == "PHASES"
    else:
        assert "StoppingConditions" not in req
    with Stubber(sm) as st:
        st.add_response("create_inference_recommendations_job",
                        {"JobArn": "arn:aws:sagemaker:eu-west-2:123456789012:inference-"
                                   "recommendations-job/twolane-job"}, req)
        arn = start_ir_job(sm, job_name="twolane-job", role_arn=ROLE, model_name="twolane-batch",
                           slo_p95_ms=750.4, payload_url="s3://b/payload.tar.gz",
                           instance_types=["ml.c6i.xlarge", "ml.g4dn.xlarge"], job_type=job_type)
        st.assert_no_pending_responses()
    assert arn.endswith("twolane-job")


def test_wait_describe_and_steps_then_choose() -> None:
    sm = sm_client()
    base = {"JobName": "j", "JobType": "Advanced", "JobArn": "arn:aws:sagemaker:eu-west-2:"
            "123456789012:inference-recommendations-job/j", "RoleArn": ROLE,
            "CreationTime": NOW, "LastModifiedTime": NOW,
            "InputConfig": {"ModelName": "twolane-batch"}}
    steps = [
        # 32 comments per request. c6i.xlarge: 600/min -> 320 comments/s at $0.204/h
        {"StepType": "BENCHMARK", "JobName": "j", "Status": "COMPLETED",
         "InferenceBenchmark": bench("ml.c6i.xlarge", 400, 600, 0.204)},
        # g4dn: 6000/min -> 3200/s at $0.736/h: cheaper per comment
        {"StepType": "BENCHMARK", "JobName": "j", "Status": "COMPLETED",
         "InferenceBenchmark": bench("ml.g4dn.xlarge", 60, 6000, 0.736)},
        # c6i.large: cheapest per comment but misses the 500 ms objective
        {"StepType": "BENCHMARK", "JobName": "j", "Status": "COMPLETED",
         "InferenceBenchmark": bench("ml.c6i.large", 900, 5000, 0.102)},
    ]
    with Stubber(sm) as st:
        st.add_response("describe_inference_recommendations_job", {**base, "Status": "IN_PROGRESS"},
                        {"JobName": "j"})
        st.add_response("describe_inference_recommendations_job",
                        {**base, "Status": "COMPLETED",
                         "InferenceRecommendations": [{
                             "Metrics": steps[1]["InferenceBenchmark"]["Metrics"],
                             "EndpointConfiguration": steps[1]["InferenceBenchmark"][
                                 "EndpointConfiguration"],
                             "ModelConfiguration": {}}]},
                        {"JobName": "j"})
        st.add_response("list_inference_recommendations_job_steps",
                        {"Steps": steps[:2], "NextToken": "t"},
                        {"JobName": "j", "StepType": "BENCHMARK", "MaxResults": 100})
        st.add_response("list_inference_recommendations_job_steps", {"Steps": steps[2:]},
                        {"JobName": "j", "StepType": "BENCHMARK", "MaxResults": 100,
                         "NextToken": "t"})
        slept: list[float] = []
        desc = wait_ir_job(sm, "j", poll_s=5, sleep=slept.append)
        got = ir_job_steps(sm, "j")
        st.assert_no_pending_responses()
    assert desc["Status"] == "COMPLETED" and slept == [5] and len(got) == 3
    ch = ir_choice(desc, got, 32, 500, PRICES)
    by = {c.name: c for c in ch.candidates}
    assert by["ml.c6i.xlarge"].usd_per_million == pytest.approx(0.204 / (320 * 3600) * 1e6)
    assert not by["ml.c6i.large"].meets_slo
    assert ch.chosen is not None and ch.chosen.name == "ml.g4dn.xlarge"


def report_tail(duration: float, billed: int, mem: int, used: int,
                init: float | None = None) -> str:
    init_s = f"\tInit Duration: {init} ms" if init else ""
    text = (f"START RequestId: r Version: $LATEST\nEND RequestId: r\n"
            f"REPORT RequestId: r\tDuration: {duration} ms\tBilled Duration: {billed} ms\t"
            f"Memory Size: {mem} MB\tMax Memory Used: {used} MB{init_s}\t\n")
    return base64.b64encode(text.encode()).decode()


def test_parse_report_line() -> None:
    got = parse_report_line(report_tail(12.34, 13, 512, 90, init=250.5))
    assert got == {"duration_ms": 12.34, "billed_ms": 13, "memory_mb": 512,
                   "max_memory_mb": 90, "init_ms": 250.5}
    with pytest.raises(ValueError):
        parse_report_line(base64.b64encode(b"no report here").decode())


def test_lambda_memory_sweep_shapes_and_restore() -> None:
    lam = boto3.client("lambda", region_name="eu-west-2", aws_access_key_id="x",
                       aws_secret_access_key="x")
    fn = "twolane-api"
    durations = {512: 400.0, 1024: 200.0}  # CPU-bound: halves with twice the memory
    with Stubber(lam) as st:
        st.add_response("get_function_configuration", {"MemorySize": 1024}, {"FunctionName": fn})
        for mb, dur in durations.items():
            st.add_response("update_function_configuration", {"MemorySize": mb},
                            {"FunctionName": fn, "MemorySize": mb})
            st.add_response("get_function_configuration", {"LastUpdateStatus": "InProgress"},
                            {"FunctionName": fn})
            st.add_response("get_function_configuration", {"LastUpdateStatus": "Successful"},
                            {"FunctionName": fn})
            for i in range(3):  # 1 cold + 2 warm
                st.add_response("invoke", {"StatusCode": 200, "LogResult": report_tail(
                    dur, int(dur) + 1, mb, 120, init=300.0 if i == 0 else None)},
                    {"FunctionName": fn, "InvocationType": "RequestResponse", "LogType": "Tail",
                     "Payload": ANY})
        st.add_response("update_function_configuration", {"MemorySize": 1024},
                        {"FunctionName": fn, "MemorySize": 1024})
        sweep = lambda_memory_sweep(lam, fn, [512, 1024], b'{"body": "{}"}', invocations=2,
                                    sleep=lambda s: None)
        st.assert_no_pending_responses()
    assert [r["memory_mb"] for r in sweep] == [512, 1024]
    assert sweep[0]["cold"][0]["init_ms"] == 300.0 and len(sweep[0]["warm"]) == 2
    cells, ch = lambda_choice(sweep, 20, 300, PRICES)
    by = {int(c.memory_mb): c for c in ch.candidates}
    assert not by[512].meets_slo and by[1024].meets_slo
    assert ch.chosen is not None and int(ch.chosen.memory_mb) == 1024
    assert len(cells) == 2 and cells[1].p95_ms == pytest.approx(200.0)
