"""The callers of a locally served API: ``LocalPrincipal``, ``local_principals`` (local-only
credentials standing for an IAM role's assumed-role session) and ``sign_request``."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ._base import _ROLE_ARN, SERVICE

# -- callers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPrincipal:
    """A caller of the local API: local-only credentials standing for an assumed-role
    session of an IAM role, and the VPC endpoint its calls come through.

    The credentials are valid only against ``LocalApi`` (the embedded AWS accepts any
    credentials anyway); they are not, and cannot become, AWS credentials."""

    access_key_id: str
    secret_access_key: str
    principal_arn: str  # the IAM role: arn:aws:iam::ACCOUNT:role/path/name
    session_arn: str  # its session: arn:aws:sts::ACCOUNT:assumed-role/name/local
    vpce_id: str | None  # the endpoint its traffic comes from (aws:SourceVpce)
    api_key: str | None = None  # sent as x-api-key by sign_request / LocalApi.request
    session_token: str | None = None  # X-Amz-Security-Token; required when set

    @property
    def account(self) -> str:
        return self.principal_arn.split(":")[4]

    @property
    def role_name(self) -> str:
        return self.principal_arn.rsplit("/", 1)[-1]

    @property
    def session_name(self) -> str:
        return self.session_arn.rsplit("/", 1)[-1]

    def credentials(self) -> Credentials:
        """botocore credentials, for ``SigV4Auth(principal.credentials(), "execute-api", region)``."""
        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)


def local_principals(principal_arns_with_endpoints: Mapping[str, str | None], *,
                     api_keys: Mapping[str, str] | None = None,
                     session_name: str = "local", session_tokens: bool = True) -> dict[str, LocalPrincipal]:
    """Local-only credentials for IAM role ARNs -> the VPC endpoint each one's calls come
    from; keyed by role ARN. Deterministic (derived from the ARN by hashing: access key
    ``ASIA`` + 16 characters, secret, session token), so a demo and its tests can recompute
    them. ``api_keys``: role ARN -> the API key value its client sends. ``session_tokens=False``:
    a key pair alone (access key ``AKIA`` …), for clients that sign with a key and secret only
    (``curl --aws-sigv4 --user KEY:SECRET``); the caller is still reported as the role's session."""
    principals: dict[str, LocalPrincipal] = {}
    for arn, vpce in principal_arns_with_endpoints.items():
        match = _ROLE_ARN.match(arn)
        if match is None:
            raise ValueError(f"not an IAM role ARN: {arn!r}")
        access = ("ASIA" if session_tokens else "AKIA") + base64.b32encode(_digest("access-key-id", arn)).decode()[:16]
        secret = base64.b64encode(_digest("secret-access-key", arn)).decode()[:40]
        token = "local/" + base64.b64encode(_digest("session-token", arn) * 3).decode() if session_tokens else None
        session = f"arn:{match['partition']}:sts::{match['account']}:assumed-role/{match['name']}/{session_name}"
        principals[arn] = LocalPrincipal(access_key_id=access, secret_access_key=secret, principal_arn=arn,
                                         session_arn=session, vpce_id=vpce, api_key=(api_keys or {}).get(arn),
                                         session_token=token)
    return principals


def _digest(purpose: str, value: str) -> bytes:
    return hashlib.sha256(f"jukinet-local-mode\0{purpose}\0{value}".encode()).digest()


def sign_request(principal: LocalPrincipal, method: str, url: str, region: str, *, body: bytes = b"",
                 headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of a SigV4-signed request (plus ``x-api-key`` when the principal has a
    key), computed by botocore exactly as any AWS SDK signs an ``execute-api`` call."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(principal.credentials(), SERVICE, region).add_auth(request)
    signed = dict(request.headers.items())
    if principal.api_key and not any(k.lower() == "x-api-key" for k in signed):
        signed["x-api-key"] = principal.api_key
    return signed
