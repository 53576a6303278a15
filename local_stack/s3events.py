"""S3 event notifications in the exact JSON shape S3 sends to Lambda (keys URL-encoded)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus


def object_created(bucket: str, key: str, size: int = 0, etag: str = "",
                   region: str = "eu-west-2") -> dict[str, Any]:
    """An `ObjectCreated:Put` event for one object, as S3 delivers it (event version 2.1)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": now,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:LOCAL"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": "LOCAL", "x-amz-id-2": "LOCAL",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "twolane-dropfolder",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "LOCAL"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": f"{int(datetime.now().timestamp() * 1e6):016X}",
                    },
                },
            }
        ]
    }
