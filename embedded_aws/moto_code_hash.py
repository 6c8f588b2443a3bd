"""One correction to moto's Lambda, kept apart from ``moto_patches`` (the DynamoDB and server
corrections): a function whose code is an S3 object hashes the object once, not once per function.

moto's ``_s3_content`` copies the whole object out of its buffer and SHA-256es it for every
``CreateFunction`` / ``UpdateFunctionCode`` naming it. The deployed assembly's 79 functions
share a handful of code assets of ~18 MB each, so CloudFormation's ``CreateStack`` read and hashed
~1.4 GB — 8.5 s of the moto server's CPU in a profiled ``jukinet demo`` (decision 0054), and
kept 79 copies of the bytes. The answer is remembered on the S3 key object itself: moto makes
a new key object for every ``PutObject``, so a changed object is a new key, hashed afresh; the
size is checked as well, for a value set in place. What each function records (its code bytes,
size, ``CodeSha256``) is exactly what moto computed before.
"""

from __future__ import annotations

from typing import Any

_ATTRIBUTE = "_jukinet_code_content"
_applied = False


def apply() -> None:
    """Install the correction (idempotent): in the moto server's process, before it serves."""
    global _applied
    if _applied:
        return
    from moto.awslambda import models

    original = models._s3_content

    def _s3_content(key: Any) -> tuple[bytes, int, str, str]:
        cached = getattr(key, _ATTRIBUTE, None)
        if cached is not None and cached[0] == key.size:
            return cached[1]
        answer = original(key)
        try:
            setattr(key, _ATTRIBUTE, (key.size, answer))
        except AttributeError:  # a key type that takes no attributes: hash each time, as before
            pass
        return answer

    _s3_content.__wrapped__ = original  # type: ignore[attr-defined]
    models._s3_content = _s3_content
    _applied = True
