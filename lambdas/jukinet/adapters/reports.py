"""A tier's security-reports bucket (セキュリティ報告): where scheduled reports are written for
the tier's security officers (``<prefix>-sec-reports-<tier>-<account>-<region>``, SSE-KMS with the
tier's ``security-reports`` key, versioned; decision 0033). Writers only put: the bucket policy
lets nobody but the tier's reporting functions write, and only the security officers read."""

from __future__ import annotations

from botocore.exceptions import ClientError

from . import aws


class ReportExists(Exception):
    """``put(..., if_absent=True)``: the key already holds a report (S3 answered 412)."""


class ReportStore:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, text: str, content_type: str, *, if_absent: bool = False) -> str:
        """Write one report (UTF-8); returns ``s3://bucket/key``. The bucket's default encryption
        (its CMK) applies; a re-run of the same day is a new version of the same key.
        ``if_absent``: a conditional write (``If-None-Match: *``): ``ReportExists`` if the key
        holds an object — checked by S3 itself, so the writer needs no read right."""
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"),
                                        ContentType=content_type, **extra)
        except ClientError as exc:
            if if_absent and aws.error_code(exc) in ("PreconditionFailed", "412"):
                raise ReportExists(f"s3://{self.bucket}/{key}") from None
            raise
        return f"s3://{self.bucket}/{key}"
