"""Serving a deployed API Gateway REST API locally, with SigV4 and its resource policy.

``LocalApi(env, runner, credentials=...)`` plays API Gateway for one REST API of a
``DeployedEnvironment``: an HTTP server on 127.0.0.1 answering ``/{stage}/{resource path}``
the way the deployed API would, and running the integrated functions through the
``LocalRunner``.

* **The API is what was deployed.** Resources, methods (authorization type, API key
  requirement, Lambda proxy integration), the stage (variables, access-log setting), the
  resource policy, API keys and usage plans are all read back from moto's API Gateway.
  moto's CloudFormation creates the RestApi (not its Policy), Resources, Methods (of the
  Integration only Type, Uri, IntegrationHttpMethod) and the Deployment; the deployer
  completes the rest through the API Gateway API (``emulate.py``: Stage, ApiKey,
  UsagePlan, UsagePlanKey, the RestApi's Policy and BinaryMediaTypes, with every intrinsic
  resolved by moto). There is no second description of the API.
* **Gateway checks, in API Gateway's order:** stage, resource and method (an unknown path
  or method is 403 ``Missing Authentication Token``, as API Gateway answers), SigV4
  (``AWS_IAM`` methods: recomputed with botocore's ``SigV4Auth`` for the access key's
  secret, service ``execute-api``, the API's region, 15 minutes of clock skew, session
  tokens), the resource policy (explicit Deny wins; otherwise an Allow must match), the
  API key (``x-api-key`` against the enabled keys of the usage plans of this stage, read
  from moto at each request so that a key disabled meanwhile is refused), then the
  Lambda proxy integration.
* **Callers are ``LocalPrincipal``s**: local-only credentials standing for an IAM role's
  assumed-role session, each with the VPC endpoint its traffic comes from. The request
  header ``X-Jukinet-Local-Source-Vpce`` (local only, never forwarded to the function)
  overrides that endpoint, to simulate a call through an endpoint the policy does not name.
* **Access logs**: every request, refused ones included, is rendered with the stage's
  ``AccessLogSetting.Format`` and put into its log group in moto's CloudWatch Logs; the
  last lines are kept in ``LocalApi.access_log``.
* **One request at a time reaches the functions**: ``LocalRunner.invoke`` swaps
  ``os.environ`` and ``sys.modules`` for the duration of an invocation, so invocations
  (and the access-log writes, which use boto3 in this process) hold the runner's lock
  (``code_image.INVOCATION_LOCK``). The gateway checks themselves run concurrently.

Not emulated (``LocalApi.not_emulated``): throttling and quotas, identity-based IAM
policies of the callers, authorizers other than AWS_IAM, integrations other than Lambda
proxy, request validation, gateway response customisation, execution logs, the network
path of a private API (the endpoint comes from the principal, not the network).

The package is split along its seams (decision 0052), this module re-exports their names:
``_base`` (constants, errors), ``principals`` (the callers), ``resource_policy``, ``sigv4``,
``server`` (``LocalApi`` and its HTTP server).
"""

from __future__ import annotations

from ._base import (
    DEFAULT_ACCESS_LOG_FORMAT,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    INVOKE_ACTION,
    MAX_PAYLOAD_BYTES,
    MAX_SKEW,
    MISSING_TOKEN,
    SERVICE,
    SIGNATURE_MISMATCH,
    SIGV4_TIMESTAMP,
    SOURCE_VPCE_HEADER,
    LocalApiError,
    UnsupportedPolicyError,
)
from .principals import (
    LocalPrincipal,
    local_principals,
    sign_request,
)
from .resource_policy import (
    Decision,
    ResourcePolicy,
)
from .server import (
    ApiMethod,
    LocalApi,
    LocalResponse,
    RawValue,
    render_access_log,
    send,
)

__all__ = [
    "ApiMethod",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "Decision",
    "INTERNAL_ERROR",
    "INVALID_TOKEN",
    "INVOKE_ACTION",
    "LocalApi",
    "LocalApiError",
    "LocalPrincipal",
    "LocalResponse",
    "MAX_PAYLOAD_BYTES",
    "MAX_SKEW",
    "MISSING_TOKEN",
    "RawValue",
    "ResourcePolicy",
    "SERVICE",
    "SIGNATURE_MISMATCH",
    "SIGV4_TIMESTAMP",
    "SOURCE_VPCE_HEADER",
    "UnsupportedPolicyError",
    "local_principals",
    "render_access_log",
    "send",
    "sign_request",
]
