"""Which container image the batch endpoint runs.

- "asset" (default): `cdk deploy` builds `sagemaker/Dockerfile` with the build arg
  ACCELERATOR=gpu|cpu chosen from `batch.instance_type` (onnxruntime-gpu with CUDA/cuDNN from
  pip on GPU instances, plain onnxruntime on CPU ones), every dependency baked in, and pushes
  it to the bootstrap ECR repository. Synth only stages the build context: no Docker, no network.
- "uri": `batch.image_uri` as given (an image built from the same Dockerfile, e.g. by CI).

The AWS PyTorch deep-learning container is no longer offered: it pip-installed the model's
requirements at every start (every scale-out from zero) and its CPU onnxruntime left a GPU idle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class EcrImage:
    uri: str
    account: str  # the ECR registry account that owns the image ("" if not ECR)
    region: str
    repository: str


def parse_ecr_uri(uri: str) -> EcrImage:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>` -> parts (empty if not ECR)."""
    host, _, rest = uri.partition("/")
    path = rest.split("@")[0]  # drop a digest
    name, _, tag = path.rpartition(":")
    repo = name if name and tag and "/" not in tag else path  # drop a tag
    m = ECR_HOST.match(host)
    if not (m and repo):
        return EcrImage(uri=uri, account="", region="", repository="")
    return EcrImage(uri=uri, account=m.group(1), region=m.group(2), repository=repo)
