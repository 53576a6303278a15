"""Which container image the batch endpoint runs.

- "asset": build `sagemaker/Dockerfile` (the twolane ONNX server image) at deploy; synth only
  stages the build context, so it needs no Docker and no network.
- "dlc":   the AWS PyTorch inference Deep Learning Container for the region and instance type,
  looked up offline from the `sagemaker` SDK's bundled image_uri_config tables.
- "uri":   `batch.image_uri` as given (e.g. an image you pushed yourself).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import BatchConfig, ConfigError


@dataclass(frozen=True)
class DlcImage:
    uri: str
    account: str  # the ECR registry account that owns the image
    repository: str


def dlc_image_uri(batch: BatchConfig, region: str) -> DlcImage:
    """PyTorch inference DLC URI from the sagemaker SDK's offline tables (no network)."""
    try:
        from sagemaker.core import image_uris  # sagemaker SDK v3
    except ImportError:  # pragma: no cover - SDK v2 layout
        try:
            from sagemaker import image_uris  # type: ignore[attr-defined,no-redef,unused-ignore]
        except ImportError as exc:
            raise ConfigError("batch.image_source is 'dlc' but the sagemaker SDK is not "
                              "installed; set batch.image_source='uri' and batch.image_uri") from exc
    try:
        uri = image_uris.retrieve("pytorch", region, version=batch.dlc_framework_version,
                                  py_version=batch.dlc_py_version,
                                  instance_type=batch.instance_type, image_scope="inference")
    except Exception as exc:  # unknown version/region in the SDK's tables
        raise ConfigError(f"no PyTorch inference image for region {region}, version "
                          f"{batch.dlc_framework_version}, {batch.dlc_py_version}: {exc}; "
                          "set batch.image_source='uri' and batch.image_uri") from None
    return parse_ecr_uri(uri)


def parse_ecr_uri(uri: str) -> DlcImage:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>` -> parts."""
    host, _, rest = uri.partition("/")
    repo = rest.split("@")[0].rsplit(":", 1)[0]
    account = host.split(".")[0]
    if not (account.isdigit() and ".dkr.ecr." in host and repo):
        return DlcImage(uri=uri, account="", repository="")
    return DlcImage(uri=uri, account=account, repository=repo)
