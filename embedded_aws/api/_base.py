"""The locally served API's constants and errors (a split of the former ``api.py``, decision 0052)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

log = logging.getLogger("embedded_aws.api")

SERVICE = "execute-api"
INVOKE_ACTION = "execute-api:Invoke"
SOURCE_VPCE_HEADER = "X-Jukinet-Local-Source-Vpce"  # local only: simulates the caller's endpoint
MAX_SKEW = dt.timedelta(minutes=15)
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload limit
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_LOOPBACK = ("127.0.0.1", "localhost")

MISSING_TOKEN = "Missing Authentication Token"
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method. Consult the service documentation for details.")
INTERNAL_ERROR = "Internal server error"

# CDK's AccessLogFormat.jsonWithStandardFields(), for the in-memory log of a stage without a setting.
DEFAULT_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "user": "$context.identity.user",
    "caller": "$context.identity.caller", "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod", "resourcePath": "$context.resourcePath", "status": "$context.status",
    "protocol": "$context.protocol", "responseLength": "$context.responseLength"}, separators=(",", ":"))

_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:[^/]+/)*(?P<name>[\w+=,.@-]+)$")
_LAMBDA_URI = re.compile(r"^arn:aws[a-z-]*:apigateway:[^:]+:lambda:path/[^/]+/functions/(?P<function>.+)/invocations$")
_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])")
_PROXY_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


class LocalApiError(RuntimeError):
    """The API cannot be served locally as deployed."""


class UnsupportedPolicyError(LocalApiError):
    """The resource policy uses something the local evaluator does not implement."""
