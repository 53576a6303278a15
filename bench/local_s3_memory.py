"""Memory of the local S3 under a day of large drops: is a file's memory freed once it leaves S3?

Before issue 22 moto kept every failed file in memory (RSS grew by about 60 MB per 25 MB file
and never fell). The drop folder's life of a file in S3 is: put into inbox/, read, copied to
failed/ (or outbox/), both S3 copies deleted once the local folder has them. This bench runs
the local S3 of `twolane up` (`local_stack.s3local.LocalS3`: moto behind the guard, mirrored to
disk) in this process and does that FILES times with FILE_MB of incompressible bytes each,
reading the process's resident set size (VmRSS) after every file.

Run: `python -m bench.local_s3_memory`. Results: bench/results/local_s3_memory.json and the
"Local S3 memory" section of bench/RESULTS.md.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from pathlib import Path

import boto3

from bench.results_md import write_section
from local_stack.s3local import LocalS3

FILES = 24
FILE_MB = 25
BUCKET = "twolane-local"
OUT = Path(__file__).resolve().parent / "results" / "local_s3_memory.json"
START, END = "<!-- local-s3-memory:start -->", "<!-- local-s3-memory:end -->"


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        s3local = LocalS3(Path(tmp), 0).start()
        try:
            creds = s3local.credentials
            s3 = boto3.client("s3", endpoint_url=s3local.endpoint, region_name="eu-west-2",
                              aws_access_key_id=creds.access_key_id,
                              aws_secret_access_key=creds.secret_access_key)
            s3.create_bucket(Bucket=BUCKET,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
            gc.collect()
            before = rss_mb()
            samples = []
            for i in range(FILES):
                body = os.urandom(FILE_MB * 1024 * 1024)
                key = f"inbox/big-{i}.csv"
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                s3.put_object(Bucket=BUCKET, Key=f"failed/big-{i}.csv", Body=got)
                for k in (key, f"failed/big-{i}.csv"):
                    s3.delete_object(Bucket=BUCKET, Key=k)
                del body, got
                gc.collect()
                samples.append(round(rss_mb(), 1))
        finally:
            s3local.stop()
    result: dict[str, object] = {
        "files": FILES, "file_mb": FILE_MB, "rss_before_mb": round(before, 1),
        "rss_after_each_file_mb": samples, "rss_peak_mb": max(samples),
        "rss_end_mb": samples[-1], "growth_mb": round(samples[-1] - before, 1),
        "growth_second_half_mb": round(samples[-1] - samples[FILES // 2 - 1], 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    block = f"""{START}
## Local S3 memory (bench/local_s3_memory.py)

{FILES} files of {FILE_MB} MB (incompressible) through the local S3 of `twolane up` as the drop
folder moves a failed file (put into inbox/, read, copied to failed/, both deleted), in one
process; resident set size after each file. Measured {result['measured_at']}.

| RSS before | after file 1 | after file {FILES // 2} | after file {FILES} (end) | peak | growth over the second half |
| --- | --- | --- | --- | --- | --- |
| {before:.0f} MiB | {samples[0]:.0f} MiB | {samples[FILES // 2 - 1]:.0f} MiB \
| {samples[-1]:.0f} MiB | {max(samples):.0f} MiB | {result['growth_second_half_mb']} MiB |

Before issue 22: about +60 MB per 25 MB file, never freed ({FILES} files would be ~1.4 GB).
{END}"""
    write_section(START, END, block)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
