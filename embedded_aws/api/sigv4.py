"""SigV4 as API Gateway checks it: the signature recomputed with botocore's ``SigV4Auth`` for the
access key's secret, the clock skew, the session token."""

from __future__ import annotations

import datetime as dt
import email.utils
import hmac
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import sha256

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from ._base import INVALID_TOKEN, MAX_SKEW, MISSING_TOKEN, SERVICE, SIGNATURE_MISMATCH, SIGV4_TIMESTAMP
from .principals import LocalPrincipal

# -- SigV4 ---------------------------------------------------------------------------------------


class _SigV4Verifier(SigV4Auth):
    """botocore's SigV4 signer, recomputing a received request's signature: the headers
    signed are the ones the request says it signed, with the values it carried, and the
    payload hash is always that of the body received."""

    def __init__(self, credentials: Credentials, region: str, headers: list[tuple[str, str]],
                 signed_headers: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._received = headers
        self._signed = set(signed_headers)

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name, value in self._received:
            if name.lower() in self._signed:
                selected[name.lower()] = value
        return selected

    def canonical_query_string(self, request: AWSRequest) -> str:
        # As AWS does on receipt: each name and value decoded, then RFC 3986-encoded, sorted.
        # For a client that encoded them per SigV4 (botocore does) this is what it signed.
        pairs = []
        for pair in urllib.parse.urlsplit(request.url).query.split("&"):
            if pair:
                key, _, value = pair.partition("=")
                pairs.append((_uri_encode(key), _uri_encode(value)))
        return "&".join(f"{key}={value}" for key, value in sorted(pairs))

    def canonical_request(self, request: AWSRequest) -> str:
        headers = self.headers_to_sign(request)
        return "\n".join([
            request.method.upper(),
            self._normalize_url_path(urllib.parse.urlsplit(request.url).path),
            self.canonical_query_string(request),
            self.canonical_headers(headers) + "\n",
            self.signed_headers(headers),
            sha256(request.body or b"").hexdigest(),
        ])


def _uri_encode(text: str) -> str:
    return urllib.parse.quote(urllib.parse.unquote(text), safe="-_.~")


@dataclass(eq=False)
class _Refusal(Exception):
    status: int
    message: str
    error_type: str  # x-amzn-ErrorType
    response_type: str  # $context.error.responseType


def _parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    return algorithm, fields


def _verify_sigv4(method: str, target: str, headers: list[tuple[str, str]], body: bytes, *, region: str,
                  principals: Mapping[str, LocalPrincipal], now: dt.datetime) -> LocalPrincipal:
    """The principal whose credentials signed the request, or ``_Refusal``."""
    header = _header(headers, "authorization")
    if header is None:
        raise _Refusal(403, MISSING_TOKEN, "MissingAuthenticationTokenException", "MISSING_AUTHENTICATION_TOKEN")
    algorithm, fields = _parse_authorization(header)
    missing = [f"Authorization header requires '{name}' parameter."
               for name in ("Credential", "Signature", "SignedHeaders") if name not in fields]
    amz_date = _header(headers, "x-amz-date")
    if amz_date is None and _header(headers, "date") is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if algorithm != "AWS4-HMAC-SHA256" or missing:
        problems = missing or [f"Unsupported Authorization Type: {algorithm}"]
        raise _Refusal(403, " ".join(problems) + f" Authorization={header}", "IncompleteSignatureException",
                       "INVALID_SIGNATURE")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _Refusal(403, f"Credential should be scoped to a valid region and service: {fields['Credential']}",
                       "IncompleteSignatureException", "INVALID_SIGNATURE")
    access_key, scope_date, scope_region, scope_service = scope[:4]
    principal = principals.get(access_key)
    token = _header(headers, "x-amz-security-token")
    if principal is None or token != principal.session_token:
        # AWS does not document the gateway response type of this refusal; counted with the signatures.
        raise _Refusal(403, INVALID_TOKEN, "UnrecognizedClientException", "INVALID_SIGNATURE")
    if scope_service != SERVICE:
        raise _Refusal(403, f"Credential should be scoped to correct service: '{SERVICE}'. ",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    if scope_region != region:
        raise _Refusal(403, f"Credential should be scoped to a valid region, not '{scope_region}'. ",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    if amz_date is not None:
        try:
            signed_at = dt.datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=dt.UTC)
        except ValueError:
            raise _Refusal(403, f"Invalid X-Amz-Date: {amz_date}", "IncompleteSignatureException",
                           "INVALID_SIGNATURE") from None
    else:
        try:
            signed_at = email.utils.parsedate_to_datetime(str(_header(headers, "date"))).astimezone(dt.UTC)
        except (TypeError, ValueError):
            raise _Refusal(403, "Invalid Date header", "IncompleteSignatureException", "INVALID_SIGNATURE") from None
        amz_date = signed_at.strftime(SIGV4_TIMESTAMP)
    if scope_date != amz_date[:8]:
        raise _Refusal(403, f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                            f"HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    stamp = now.strftime(SIGV4_TIMESTAMP)
    if signed_at < now - MAX_SKEW:
        raise _Refusal(403, f"Signature expired: {amz_date} is now earlier than "
                            f"{(now - MAX_SKEW).strftime(SIGV4_TIMESTAMP)} ({stamp} - 15 min.)",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    if signed_at > now + MAX_SKEW:
        raise _Refusal(403, f"Signature not yet current: {amz_date} is still later than "
                            f"{(now + MAX_SKEW).strftime(SIGV4_TIMESTAMP)} ({stamp} + 15 min.)",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    signed_headers = [h.strip().lower() for h in fields["SignedHeaders"].split(";") if h.strip()]
    if "host" not in signed_headers:
        raise _Refusal(403, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
                       "IncompleteSignatureException", "INVALID_SIGNATURE")
    request = AWSRequest(method=method, url=f"http://localhost{target}", data=body)
    request.context["timestamp"] = amz_date
    verifier = _SigV4Verifier(principal.credentials(), region, headers, signed_headers)
    canonical = verifier.canonical_request(request)
    string_to_sign = verifier.string_to_sign(request, canonical)
    expected = verifier.signature(string_to_sign, request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise _Refusal(403, f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                            f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
                       "InvalidSignatureException", "INVALID_SIGNATURE")
    return principal


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found
