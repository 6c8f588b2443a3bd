"""The API as deployed, served: ``LocalApi`` (routes, the gateway's checks in API Gateway's order,
the Lambda proxy event and response, access logs) and its HTTP server."""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from botocore.exceptions import BotoCoreError, ClientError

from jukinet.clock import system_clock

from ..code_image import INVOCATION_LOCK
from ..model import DeployedEnvironment, NotEmulated, StackReport
from ..runner import LocalRunner
from ._base import (
    _CONTEXT_VARIABLE,
    _LAMBDA_URI,
    _LOOPBACK,
    _PROXY_RESPONSE_KEYS,
    DEFAULT_ACCESS_LOG_FORMAT,
    INTERNAL_ERROR,
    INVOKE_ACTION,
    MAX_PAYLOAD_BYTES,
    MISSING_TOKEN,
    SOURCE_VPCE_HEADER,
    LocalApiError,
    log,
)
from .principals import LocalPrincipal, _digest, sign_request
from .resource_policy import ResourcePolicy
from .sigv4 import _header, _Refusal, _verify_sigv4

# -- the API as deployed -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiMethod:
    """One method of the deployed API, as moto's API Gateway holds it."""

    resource_id: str
    resource_path: str  # /residents/{code}
    http_method: str  # GET, POST... or ANY
    authorization_type: str  # AWS_IAM, NONE...
    api_key_required: bool
    integration_type: str | None
    integration_uri: str | None
    function: str | None  # the runner's function name, for a Lambda proxy integration it can run


@dataclass
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    param: tuple[str, _Node] | None = None
    greedy: tuple[str, _Node] | None = None
    resource: tuple[str, str] | None = None  # (resource id, resource path)


@dataclass(frozen=True)
class _ApiKey:
    id: str
    name: str
    value: str


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Exchange:
    """What one request gathered on its way through the gateway (access-log variables)."""

    request_id: str
    extended_request_id: str
    started: float
    request_time: str
    request_time_epoch: int
    http_method: str
    path: str = "-"
    resource_path: str = "-"
    resource_id: str = "-"
    protocol: str = "HTTP/1.1"
    user_agent: str | None = None
    principal: LocalPrincipal | None = None
    caller: str | None = None
    source_vpce: str | None = None
    api_key: _ApiKey | None = None
    error: _Refusal | None = None
    integration_error: str | None = None
    integration_status: int | None = None
    integration_latency_ms: int | None = None
    function_status: int | None = None


class LocalApi:
    """A deployed REST API served on 127.0.0.1. Use as a context manager::

        principals = local_principals({role_arn: "vpce-0123..."})
        with LocalApi(env, runner, credentials=principals) as api:
            print(api.url)                          # http://127.0.0.1:<port>/v1
            response = api.request(principals[role_arn], "GET", "/residents/123")

    ``credentials``: the principals that may sign requests (keyed by anything; looked up by
    access key id). ``api``: logical id, id or name of the REST API when the environment
    has several; ``stage``: the stage to serve when the API has several."""

    def __init__(self, env: DeployedEnvironment, runner: LocalRunner, *,
                 credentials: Mapping[str, LocalPrincipal], api: str | None = None, stage: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, access_log_size: int = 1000) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the local API binds the loopback interface only, not {host!r}")
        self.env = env
        self.runner = runner
        self.host = "127.0.0.1"
        self._requested_port = port
        self.principals = {p.access_key_id: p for p in credentials.values()}
        self.access_log: deque[str] = deque(maxlen=access_log_size)
        self.not_emulated: list[NotEmulated] = []
        self.invocations = 0
        # runner.invoke swaps os.environ, sys.modules: one invocation at a time in the process. The
        # runner's own (re-entrant) lock, so a runner driven from another thread is covered too.
        self._invoke_lock = INVOCATION_LOCK
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log_stream_ready = False
        self._role_ids: dict[str, str] = {}
        self._stack, self.api_logical_id, self.api_id = self._find_api(api)
        self.region, self.account = self._stack.region, self._stack.account
        self._apigw = env.client("apigateway", self.region, self.account)
        self._load(stage)

    # -- loading what was deployed ---------------------------------------------------------------

    def _find_api(self, wanted: str | None) -> tuple[StackReport, str, str]:
        found = []
        for stack in self.env.stacks.values():
            for resource in stack.resources_of_type("AWS::ApiGateway::RestApi"):
                if resource.physical_id and resource.state == "CREATED":
                    found.append((stack, resource.logical_id, resource.physical_id))
        if wanted is not None:
            selected = [f for f in found if wanted in (f[1], f[2])]
            if not selected:  # by name
                selected = [f for f in found
                            if self.env.client("apigateway", f[0].region, f[0].account)
                            .get_rest_api(restApiId=f[2])["name"] == wanted]
            found = selected
        if len(found) != 1:
            names = ", ".join(f"{s.stack_name}/{lid} ({pid})" for s, lid, pid in found) or "none"
            raise LocalApiError(f"expected exactly one deployed REST API{f' matching {wanted!r}' if wanted else ''}; "
                                f"found {names}")
        return found[0]

    def _note(self, feature: str, reason: str, logical_id: str | None = None, rtype: str | None = None) -> None:
        self.not_emulated.append(NotEmulated(self._stack.stack_name, logical_id or self.api_logical_id,
                                             rtype or "AWS::ApiGateway::RestApi", feature, reason))

    def _load(self, wanted_stage: str | None) -> None:
        for item in self.env.not_emulated:
            if item.stack == self._stack.stack_name and item.logical_id == self.api_logical_id \
                    and item.feature == "AWS::ApiGateway::RestApi":
                raise LocalApiError(f"the deployer could not complete the REST API: {item.reason}")
        api = self._apigw.get_rest_api(restApiId=self.api_id)
        self.name = api["name"]
        self.endpoint_types = list(api.get("endpointConfiguration", {}).get("types", []))
        self.private = "PRIVATE" in self.endpoint_types
        self.binary_media_types = list(api.get("binaryMediaTypes", []))
        self.api_key_source = api.get("apiKeySource", "HEADER")
        self.policy = (ResourcePolicy(api["policy"], region=self.region, account=self.account, api_id=self.api_id)
                       if api.get("policy") else None)
        if self.private and self.policy is None:
            self._note("resource policy", "a private API without a resource policy cannot be invoked in AWS; "
                                          "served locally with no policy check")

        stages = self._apigw.get_stages(restApiId=self.api_id).get("item", [])
        if wanted_stage is not None:
            stages = [s for s in stages if s["stageName"] == wanted_stage]
        if len(stages) != 1:
            states = {r.logical_id: r.state for r in self._stack.resources_of_type("AWS::ApiGateway::Stage")}
            raise LocalApiError(f"REST API {self.api_id}: expected one stage{f' {wanted_stage!r}' if wanted_stage else ''}"
                                f" in moto's API Gateway, found {[s['stageName'] for s in stages]} "
                                f"(Stage resources of the stack: {states or 'none'})")
        stage = stages[0]
        self.stage = str(stage["stageName"])
        self.deployment_id = stage.get("deploymentId")
        self.stage_variables: dict[str, str] = dict(stage.get("variables") or {})
        settings = stage.get("accessLogSettings") or {}
        self.access_log_format: str | None = settings.get("format")
        self.access_log_group: tuple[str, str, str] | None = None  # (region, account, log group name)
        if settings.get("destinationArn"):
            parts = settings["destinationArn"].split(":")
            if len(parts) >= 7 and parts[2] == "logs" and parts[5] == "log-group":
                self.access_log_group = (parts[3], parts[4], parts[6])
            else:
                self._note("access log destination", f"{settings['destinationArn']} is not a log group; access "
                                                     f"log lines are kept in memory only")
        self._logs = (self.env.client("logs", self.access_log_group[0], self.access_log_group[1])
                      if self.access_log_group else None)
        self._log_stream = f"{self.api_id}-{self.stage}-local"

        by_arn = {fn.arn: name for name, fn in self.runner.functions.items()}
        self.methods: dict[str, dict[str, ApiMethod]] = {}  # resource id -> method -> ApiMethod
        self._root = _Node()
        for resource in self._resources():
            path = resource["path"]
            self._add_route(path, resource["id"])
            methods = self.methods.setdefault(resource["id"], {})
            for http_method, method in (resource.get("resourceMethods") or {}).items():
                methods[http_method] = self._method(resource["id"], path, http_method, method, by_arn)
        self._api_keys, self._api_keys_checked = self._load_api_keys()
        for principal in self.principals.values():  # boto3 now, not in a request thread
            self._role_id(principal)
        self._general_notes()

    def _resources(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"restApiId": self.api_id, "embed": ["methods"], "limit": 500}
        while True:
            page = self._apigw.get_resources(**request)
            items += page.get("items", [])
            if not page.get("position"):
                return items
            request["position"] = page["position"]

    def _method(self, resource_id: str, path: str, http_method: str, method: Mapping[str, Any],
                by_arn: Mapping[str, str]) -> ApiMethod:
        integration = method.get("methodIntegration") or {}
        integration_type, uri = integration.get("type"), integration.get("uri")
        function = None
        where = f"{http_method} {path}"
        if integration_type == "AWS_PROXY" and uri:
            match = _LAMBDA_URI.match(uri)
            arn = match["function"] if match else None
            if arn and "${stageVariables." in arn:
                arn = re.sub(r"\$\{stageVariables\.([^}]+)\}", lambda m: self.stage_variables.get(m[1], ""), arn)
            if arn and arn.count(":") > 6:  # a qualified ARN (alias or version): the runner runs $LATEST
                arn = arn.rsplit(":", 1)[0]
            function = by_arn.get(arn or "")
            if function is None:
                self._note(f"integration of {where}", f"{uri} is not a function the local runner can run; the "
                                                      f"method answers 500", rtype="AWS::ApiGateway::Method")
        else:
            self._note(f"integration of {where}", f"{integration_type or 'no'} integration: only Lambda proxy "
                                                  f"(AWS_PROXY) integrations are served; the method answers 500",
                       rtype="AWS::ApiGateway::Method")
        authorization = method.get("authorizationType") or "NONE"
        if authorization not in ("AWS_IAM", "NONE"):
            self._note(f"authorizer of {where}", f"{authorization} authorization is not emulated; the method "
                                                 f"answers 500", rtype="AWS::ApiGateway::Method")
        return ApiMethod(resource_id=resource_id, resource_path=path, http_method=http_method,
                         authorization_type=authorization, api_key_required=bool(method.get("apiKeyRequired")),
                         integration_type=integration_type, integration_uri=uri, function=function)

    def _add_route(self, path: str, resource_id: str) -> None:
        node = self._root
        for segment in [s for s in path.split("/") if s]:
            if segment.startswith("{") and segment.endswith("+}"):
                if node.greedy is None:
                    node.greedy = (segment[1:-2], _Node())
                node = node.greedy[1]
            elif segment.startswith("{") and segment.endswith("}"):
                if node.param is None:
                    node.param = (segment[1:-1], _Node())
                node = node.param[1]
            else:
                node = node.literal.setdefault(segment, _Node())
        node.resource = (resource_id, path)

    def _load_api_keys(self) -> tuple[dict[str, _ApiKey], bool]:
        if not any(m.api_key_required for methods in self.methods.values() for m in methods.values()):
            return {}, True
        if self.api_key_source != "HEADER":
            self._note("API key source", f"apiKeySource {self.api_key_source}: keys from an authorizer are not "
                                         f"emulated; any non-empty x-api-key header is accepted")
            return {}, False
        plans = [p for p in self._apigw.get_usage_plans(limit=500).get("items", [])
                 if any(s.get("apiId") == self.api_id and s.get("stage") == self.stage
                        for s in p.get("apiStages", []))]
        if not plans:
            created = [r for r in self._stack.resources
                       if r.resource_type in ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::UsagePlanKey",
                                              "AWS::ApiGateway::ApiKey")]
            self._note("API key checking", "no usage plan of this stage exists in moto's API Gateway "
                                           f"({', '.join(f'{r.logical_id}: {r.state}' for r in created) or 'none'}); "
                                           "any non-empty x-api-key header is accepted")
            return {}, False
        keys: dict[str, _ApiKey] = {}
        for plan in plans:
            for item in self._apigw.get_usage_plan_keys(usagePlanId=plan["id"], limit=500).get("items", []):
                if item.get("type", "API_KEY") != "API_KEY":
                    continue
                key = self._apigw.get_api_key(apiKey=item["id"], includeValue=True)
                if key.get("enabled") and key.get("value"):
                    keys[key["value"]] = _ApiKey(key["id"], key.get("name", ""), key["value"])
        return keys, True

    def _general_notes(self) -> None:
        self._note("API Gateway throttling and quotas", "usage plan and stage limits are not enforced; requests "
                                                        "are never throttled or counted")
        self._note("identity-based IAM policies", "a caller's own IAM policies are not evaluated: a valid "
                                                  "signature and the resource policy decide")
        if self.private:
            self._note("private API network path", "calls reach 127.0.0.1 directly; aws:SourceVpce is the "
                                                   f"principal's configured endpoint or the {SOURCE_VPCE_HEADER} "
                                                   "header, and VPC endpoint policies are not evaluated")
        self._note("API Gateway request handling", "query-string (presigned) SigV4, request validators, "
                                                   "request parameters/models, gateway response customisation, "
                                                   "execution logs and the 29 s integration timeout are not "
                                                   "emulated")
        others = sorted({r.resource_type for r in self._stack.resources
                         if r.resource_type.startswith("AWS::ApiGateway::") and r.state == "NOT_EMULATED"})
        for rtype in others:
            self._note(rtype, "not deployed locally (see DeployedEnvironment.not_emulated)", rtype=rtype)

    def _api_key_in_force(self, value: str) -> bool:
        """Whether ``value`` is an enabled key of a usage plan of this stage *now*: a key
        disabled (``jukinet isolate agency``) or enabled after the server started counts at
        once. A known key costs one GetApiKey; an unknown value reloads the keys."""
        with self._invoke_lock:  # boto3 in this process: not while a function's environment is swapped in
            key = self._api_keys.get(value)
            if key is None:
                self._api_keys, self._api_keys_checked = self._load_api_keys()
                return value in self._api_keys
            try:
                return bool(self._apigw.get_api_key(apiKey=key.id).get("enabled"))
            except ClientError:  # deleted
                return False

    @property
    def api_keys(self) -> dict[str, str]:
        """API key name -> value, for the keys this stage accepts (empty when not checked)."""
        return {key.name: key.value for key in self._api_keys.values()}

    @property
    def routes(self) -> list[ApiMethod]:
        return [m for methods in self.methods.values() for m in methods.values()]

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise LocalApiError("the local API is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>/<stage>"""
        return f"http://{self.host}:{self.port}/{self.stage}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self._requested_port), _Handler)
        server.daemon_threads = True
        server.api = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"local-api-{self.api_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- a client, for demos and tests ----------------------------------------------------------------

    def request(self, principal: LocalPrincipal | None, method: str, path: str, *,
                query: Mapping[str, str] | Iterable[tuple[str, str]] | None = None, body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> LocalResponse:
        """Send a request to the running API, SigV4-signed by ``principal`` (None: unsigned).
        ``path`` is relative to the stage (``/residents/123``)."""
        url = self.url + "/" + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode(list(query.items() if isinstance(query, Mapping) else query),
                                                quote_via=urllib.parse.quote)
        data = body.encode() if isinstance(body, str) else (body or b"")
        sent = dict(headers or {})
        if principal is not None:
            sent = sign_request(principal, method, url, self.region, body=data, headers=sent)
        return send(method, url, data, sent, timeout_s=timeout_s)

    # -- serving -----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
               protocol: str = "HTTP/1.1") -> tuple[int, list[tuple[str, str]], bytes]:
        """One request through the gateway: (status, headers, body). ``target``: the raw
        request target (``/v1/residents/123?x=1``)."""
        now = system_clock().timestamp()
        exchange = _Exchange(request_id=str(uuid.uuid4()),
                             extended_request_id=base64.b64encode(secrets.token_bytes(12)).decode()[:16],
                             started=now, request_time=time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                             request_time_epoch=int(now * 1000), http_method=method.upper(), protocol=protocol,
                             user_agent=_header(headers, "user-agent"))
        try:
            status, out_headers, out_body = self._gateway(exchange, target, headers, body)
        except _Refusal as refusal:
            exchange.error = refusal
            status, out_headers, out_body = _error_response(refusal)
        except Exception:  # a bug here must not kill the server thread
            log.exception("local API failed on %s %s", method, target)
            refusal = _Refusal(500, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX")
            exchange.error = refusal
            status, out_headers, out_body = _error_response(refusal)
        out_headers += [("x-amzn-RequestId", exchange.request_id), ("x-amz-apigw-id", exchange.extended_request_id)]
        self._access_log(exchange, status, len(out_body))
        return status, out_headers, out_body

    def _gateway(self, exchange: _Exchange, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        split = urllib.parse.urlsplit(target)
        segments = split.path.split("/")[1:]
        if not segments or segments[0] != self.stage:
            raise _Refusal(403, "Forbidden", "ForbiddenException", "DEFAULT_4XX")
        rest = segments[1:]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        decoded = [urllib.parse.unquote(s) for s in rest]
        exchange.path = "/" + "/".join(decoded)
        found = self._match(decoded)
        method = None
        if found is not None:
            (resource_id, _path), path_params = found
            methods = self.methods.get(resource_id, {})
            method = methods.get(exchange.http_method) or methods.get("ANY")
        if method is None:
            raise _Refusal(403, MISSING_TOKEN, "MissingAuthenticationTokenException", "MISSING_AUTHENTICATION_TOKEN")
        exchange.resource_path, exchange.resource_id = method.resource_path, method.resource_id
        if len(body) > MAX_PAYLOAD_BYTES:
            raise _Refusal(413, "Request Too Long", "RequestTooLongException", "REQUEST_TOO_LARGE")
        if method.authorization_type not in ("AWS_IAM", "NONE"):
            raise _Refusal(500, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX")

        principal = None
        if method.authorization_type == "AWS_IAM":
            principal = _verify_sigv4(exchange.http_method, target, headers, body, region=self.region,
                                      principals=self.principals, now=system_clock())
            exchange.principal = principal
            exchange.caller = f"{self._role_id(principal)}:{principal.session_name}"
        override = _header(headers, SOURCE_VPCE_HEADER.lower())
        exchange.source_vpce = override or (principal.vpce_id if principal else None)

        resource_arn = (f"{self.policy.api_arn if self.policy else self._api_arn()}/{self.stage}/"
                        f"{exchange.http_method}{exchange.path}")
        if self.policy is not None:
            decision = self.policy.evaluate(resource_arn=resource_arn, principal=principal,
                                            source_vpce=exchange.source_vpce)
            if decision != "allow":
                who = principal.session_arn if principal else "anonymous"
                suffix = " with an explicit deny" if decision == "explicit-deny" else ""
                raise _Refusal(403, f"User: {who} is not authorized to perform: {INVOKE_ACTION} on resource: "
                                    f"{resource_arn}{suffix}", "AccessDeniedException", "ACCESS_DENIED")

        if method.api_key_required:
            value = _header(headers, "x-api-key")
            if not value or (self._api_keys_checked and not self._api_key_in_force(value)):
                raise _Refusal(403, "Forbidden", "ForbiddenException", "INVALID_API_KEY")
            exchange.api_key = self._api_keys.get(value) or _ApiKey("-", "-", value)

        if method.function is None:
            exchange.integration_error = f"no runnable integration for {method.http_method} {method.resource_path}"
            raise _Refusal(500, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX")
        event = self._event(exchange, method, path_params, split.query, headers, body)
        return self._invoke(exchange, method.function, event)

    def _api_arn(self) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}"

    def _match(self, segments: list[str]) -> tuple[tuple[str, str], dict[str, str]] | None:
        def walk(node: _Node, i: int, params: dict[str, str]) -> tuple[tuple[str, str], dict[str, str]] | None:
            if i == len(segments):
                return (node.resource, params) if node.resource else None
            segment = segments[i]
            if segment == "":
                return None
            if segment in node.literal:
                found = walk(node.literal[segment], i + 1, params)
                if found:
                    return found
            if node.param is not None:
                found = walk(node.param[1], i + 1, {**params, node.param[0]: segment})
                if found:
                    return found
            if node.greedy is not None and node.greedy[1].resource is not None:
                return node.greedy[1].resource, {**params, node.greedy[0]: "/".join(segments[i:])}
            return None

        return walk(self._root, 0, {})

    def _role_id(self, principal: LocalPrincipal) -> str:
        """The role's unique id (AROA...) as moto's IAM holds it, else a derived one."""
        if principal.principal_arn not in self._role_ids:
            role_id = "AROA" + base64.b32encode(_digest("role-id", principal.principal_arn)).decode()[:17]
            if principal.account in {s.account for s in self.env.stacks.values()}:
                with contextlib.suppress(ClientError):
                    role_id = self.env.client("iam", self.region, principal.account).get_role(
                        RoleName=principal.role_name)["Role"]["RoleId"]
            self._role_ids[principal.principal_arn] = role_id
        return self._role_ids[principal.principal_arn]

    def _event(self, exchange: _Exchange, method: ApiMethod, path_params: Mapping[str, str], query: str,
               headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
        """The REST API (payload 1.0) Lambda proxy event, as API Gateway builds it."""
        forwarded = [(k, v) for k, v in headers if k.lower() != SOURCE_VPCE_HEADER.lower()]
        port = str(self.port) if self._server is not None else "443"  # handle() may be called directly
        forwarded += [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Port", port),
                      ("X-Forwarded-Proto", "http"), ("X-Amzn-Trace-Id", _trace_id(exchange.started))]
        if self.private and exchange.source_vpce:
            forwarded.append(("x-amzn-vpce-id", exchange.source_vpce))
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for key, value in forwarded:
            single[key] = value
            multi.setdefault(key, []).append(value)
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query_single = {k: v for k, v in pairs}
        query_multi: dict[str, list[str]] = {}
        for key, value in pairs:
            query_multi.setdefault(key, []).append(value)
        binary = self._is_binary(_header(headers, "content-type"))
        principal = exchange.principal
        identity = {
            "cognitoIdentityPoolId": None, "cognitoIdentityId": None, "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None, "principalOrgId": None, "clientCert": None,
            "accountId": principal.account if principal else None,
            "caller": exchange.caller, "user": exchange.caller,
            "userArn": principal.session_arn if principal else None,
            "accessKey": principal.access_key_id if principal else None,
            "sourceIp": "127.0.0.1",
            "userAgent": exchange.user_agent,
            "apiKey": exchange.api_key.value if exchange.api_key else None,
            "apiKeyId": exchange.api_key.id if exchange.api_key and exchange.api_key.id != "-" else None,
        }
        if self.private:
            identity["vpceId"] = exchange.source_vpce
        return {
            "resource": method.resource_path,
            "path": exchange.path,
            "httpMethod": exchange.http_method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": dict(path_params) or None,
            "stageVariables": dict(self.stage_variables) or None,
            "requestContext": {
                "resourceId": method.resource_id,
                "resourcePath": method.resource_path,
                "httpMethod": exchange.http_method,
                "extendedRequestId": exchange.extended_request_id,
                "requestTime": exchange.request_time,
                "path": f"/{self.stage}{exchange.path}",
                "accountId": self.account,
                "protocol": exchange.protocol,
                "stage": self.stage,
                "domainPrefix": self.api_id,
                "requestTimeEpoch": exchange.request_time_epoch,
                "requestId": exchange.request_id,
                "identity": identity,
                "domainName": f"{self.api_id}.execute-api.{self.region}.amazonaws.com",
                "deploymentId": self.deployment_id,
                "apiId": self.api_id,
            },
            "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace")) if body else None,
            "isBase64Encoded": bool(body) and binary,
        }

    def _is_binary(self, content_type: str | None) -> bool:
        if not content_type or not self.binary_media_types:
            return False
        media = content_type.split(";")[0].strip().lower()
        return any(fnmatch.fnmatchcase(media, pattern.lower()) for pattern in self.binary_media_types)

    def _invoke(self, exchange: _Exchange, function: str, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]],
                                                                                          bytes]:
        started = time.perf_counter()
        with self._invoke_lock:
            result = self.runner.invoke(function, event)
            self.invocations += 1
        exchange.integration_latency_ms = int((time.perf_counter() - started) * 1000)
        exchange.integration_status = 200
        if not result.ok:
            exchange.integration_error = (f"Lambda execution failed with status 200 due to customer function error: "
                                          f"{type(result.error).__name__}: {result.error}")
            raise _Refusal(502, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX")
        try:
            response = json.loads(json.dumps(result.response))  # what Lambda would serialise
            status, headers, body = _proxy_response(response)
        except (TypeError, ValueError) as exc:
            exchange.integration_error = f"Execution failed due to configuration error: Malformed Lambda proxy " \
                                         f"response ({exc})"
            raise _Refusal(502, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX") from None
        exchange.function_status = status
        return status, headers, body

    # -- access logs -------------------------------------------------------------------------

    def _access_log(self, exchange: _Exchange, status: int, length: int) -> None:
        line = render_access_log(self.access_log_format or DEFAULT_ACCESS_LOG_FORMAT,
                                 self._log_variables(exchange, status, length))
        self.access_log.append(line)
        if self._logs is None or self.access_log_group is None:
            return
        group = self.access_log_group[2]
        try:
            with self._invoke_lock:  # boto3 in this process: not while a function's environment is swapped in
                if not self._log_stream_ready:
                    with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                        self._logs.create_log_stream(logGroupName=group, logStreamName=self._log_stream)
                    self._log_stream_ready = True
                self._logs.put_log_events(logGroupName=group, logStreamName=self._log_stream, logEvents=[
                    {"timestamp": exchange.request_time_epoch, "message": line}])
        except (ClientError, BotoCoreError) as exc:  # a log line lost never costs the caller an answer
            log.warning("access log line not written to %s: %s", group, exc)

    def _log_variables(self, exchange: _Exchange, status: int, length: int) -> dict[str, Any]:
        principal, error = exchange.principal, exchange.error
        return {
            "requestId": exchange.request_id,
            "extendedRequestId": exchange.extended_request_id,
            "requestTime": exchange.request_time,
            "requestTimeEpoch": exchange.request_time_epoch,
            "httpMethod": exchange.http_method,
            "resourcePath": exchange.resource_path,
            "resourceId": exchange.resource_id,
            "path": f"/{self.stage}{exchange.path}" if exchange.path != "-" else "-",
            "stage": self.stage,
            "apiId": self.api_id,
            "accountId": self.account,
            "deploymentId": self.deployment_id,
            "domainName": f"{self.api_id}.execute-api.{self.region}.amazonaws.com",
            "domainPrefix": self.api_id,
            "protocol": exchange.protocol,
            "status": status,
            "responseLength": length,
            "responseLatency": int((time.time() - exchange.started) * 1000),
            "integrationLatency": exchange.integration_latency_ms,
            "integrationStatus": exchange.integration_status,
            "integration.latency": exchange.integration_latency_ms,
            "integration.status": exchange.function_status,
            "integration.integrationStatus": exchange.integration_status,
            "integration.error": exchange.integration_error,
            "integrationErrorMessage": exchange.integration_error,
            "error.message": error.message if error else None,
            "error.messageString": RawValue(json.dumps(error.message if error else "-", ensure_ascii=False)),
            "error.responseType": error.response_type if error else None,
            "identity.userArn": principal.session_arn if principal else None,
            "identity.caller": exchange.caller,
            "identity.user": exchange.caller,
            "identity.accountId": principal.account if principal else None,
            "identity.accessKey": principal.access_key_id if principal else None,
            "identity.vpceId": exchange.source_vpce,
            "identity.sourceIp": "127.0.0.1",
            "identity.userAgent": exchange.user_agent,
            "identity.apiKey": exchange.api_key.value if exchange.api_key else None,
            "identity.apiKeyId": exchange.api_key.id if exchange.api_key else None,
        }


class RawValue(str):
    """An access-log value inserted as is (``$context.error.messageString`` is already a
    quoted JSON string)."""


def render_access_log(template: str, variables: Mapping[str, Any]) -> str:
    """Substitute ``$context.<name>`` in an access-log format; unknown or absent values
    become ``-``. Values are JSON-escaped (without quotes) so a JSON format stays JSON,
    except ``RawValue``s."""

    def value(match: re.Match[str]) -> str:
        found = variables.get(match.group(1))
        if isinstance(found, RawValue):
            return str(found)
        return "-" if found is None else json.dumps(str(found), ensure_ascii=False)[1:-1]

    return _CONTEXT_VARIABLE.sub(value, template)


def _proxy_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a Lambda proxy response to HTTP; TypeError/ValueError if malformed (API Gateway: 502)."""
    if not isinstance(response, dict):
        raise TypeError("not a JSON object")
    unknown = set(response) - _PROXY_RESPONSE_KEYS
    if unknown:
        raise ValueError(f"unexpected field(s) {', '.join(sorted(unknown))}")
    status = response.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r}")
    body = response.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body is not a string")
    encoded = response.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise TypeError("isBase64Encoded is not a boolean")
    try:
        payload = base64.b64decode(body or "", validate=True) if encoded else (body or "").encode()
    except binascii.Error:
        raise ValueError("body is not valid base64") from None
    single = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise TypeError("headers are not objects")
    merged: dict[str, list[str]] = {}
    for key, value in single.items():
        if isinstance(value, dict | list):
            raise TypeError(f"header {key} is not a scalar")
        merged[key] = [_scalar(value)]
    for key, values in multi.items():
        if not isinstance(values, list):
            raise TypeError(f"multiValueHeaders {key} is not a list")
        merged[key] = [_scalar(v) for v in values]  # multiValueHeaders win over headers
    headers = [(k, v) for k, values in merged.items() for v in values]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return status, headers, payload


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _error_response(refusal: _Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"message": refusal.message}).encode()
    return refusal.status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", refusal.error_type)], body


def _trace_id(started: float) -> str:
    return f"Root=1-{int(started):08x}-{secrets.token_hex(12)}"


# -- HTTP ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jukinet-local-api"

    def _serve(self) -> None:
        api: LocalApi = self.server.api  # type: ignore[attr-defined]
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True  # the rest of the body is still unread
            self.send_error(413 if "Too Long" in str(exc) else 400, str(exc))
            return
        try:
            status, headers, payload = api.handle(self.command, self.path, list(self.headers.items()), body,
                                                  protocol=self.request_version)
        except Exception:  # never an empty reply: the caller gets API Gateway's 500 and the log the cause
            log.exception("local API failed outside the gateway on %s %s", self.command, self.path)
            status, headers, payload = _error_response(
                _Refusal(500, INTERNAL_ERROR, "InternalServerErrorException", "DEFAULT_5XX"))
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if sum(map(len, chunks)) + size > MAX_PAYLOAD_BYTES + 1:
                    raise ValueError("Request Too Long")
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES + 1:
            raise ValueError("Request Too Long")
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("local API: " + format, *args)


def send(method: str, url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float = 60.0) -> LocalResponse:
    """A plain HTTP request (no proxy from the environment), returning errors as responses."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body or None, method=method, headers=dict(headers))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return LocalResponse(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return LocalResponse(error.code, dict(error.headers.items()), error.read())
