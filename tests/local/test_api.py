"""The deployed private REST API served locally (embedded_aws/api/): a toy CDK app
with a private RestApi (resource policy, AWS_IAM methods, an API key and usage plan, an
access-logged stage) is synthesized, deployed into moto and called with SigV4 exactly as
any AWS SDK signs an execute-api request.

The policy and the SigV4 unit tests at the end need no synth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from embedded_aws.api import (
    LocalApi,
    LocalPrincipal,
    RawValue,
    ResourcePolicy,
    UnsupportedPolicyError,
    local_principals,
    render_access_log,
    send,
    sign_request,
)
from embedded_aws.deploy import DeployedEnvironment, deploy_assembly
from embedded_aws.runner import LocalRunner
from embedded_aws.server import MotoServer

slow = pytest.mark.slow

REGION = "ap-northeast-1"
ACCOUNT = "123456789012"
VPCE = "vpce-0a1b2c3d4e5f60718"
OTHER_VPCE = "vpce-0ffffffffffffffff"
API_KEY = "toy-api-key-0123456789abcdef"
STRANGER = f"arn:aws:iam::{ACCOUNT}:role/agency/stranger"
LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "requestTime": "$context.requestTime", "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "userArn": "$context.identity.userArn",
    "caller": "$context.identity.caller", "accountId": "$context.identity.accountId",
    "vpceId": "$context.identity.vpceId", "sourceIp": "$context.identity.sourceIp",
    "error": "$context.error.message", "integrationError": "$context.integrationErrorMessage",
    "unknown": "$context.authorizer.claims.sub", "type": "$context.error.responseType"})[:-1] \
    + ', "errorString": $context.error.messageString}'  # unquoted: the variable is a quoted JSON string

HANDLER_CODE = textwrap.dedent('''
    import json


    def echo(event, context):
        if event["resource"] == "/fail":
            raise RuntimeError("boom")
        if event["resource"] == "/malformed":
            return {"statusCode": 200, "body": {"not": "a string"}}
        if event["isBase64Encoded"]:  # binary in, the same bytes out
            return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                    "body": event["body"], "isBase64Encoded": True}
        return {"statusCode": 201 if event["httpMethod"] == "POST" else 200,
                "headers": {"Content-Type": "application/json", "X-Echo": "1"},
                "multiValueHeaders": {"X-Many": ["a", "b"]},
                "body": json.dumps({"event": event, "function": context.function_name})}
''')


def build_api_app(outdir: Path, code_dir: Path) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_logs as logs

    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "ToyApi", env=cdk.Environment(account=ACCOUNT, region=REGION))
    caller = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal(), path="/agency/")
    echo = lambda_.Function(stack, "Echo", runtime=lambda_.Runtime.PYTHON_3_12, handler="toy_api.app.echo",
                            code=lambda_.Code.from_asset(str(code_dir)))
    access_logs = logs.LogGroup(stack, "AccessLogs", removal_policy=cdk.RemovalPolicy.DESTROY)
    policy = iam.PolicyDocument(statements=[
        iam.PolicyStatement(effect=iam.Effect.ALLOW, principals=[iam.ArnPrincipal(caller.role_arn)],
                            actions=["execute-api:Invoke"], resources=["execute-api:/*"]),
        iam.PolicyStatement(effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()], actions=["execute-api:Invoke"],
                            resources=["execute-api:/*"],
                            conditions={"StringNotEquals": {"aws:SourceVpce": [VPCE]}}),
    ])
    api = apigw.RestApi(
        stack, "Api", endpoint_types=[apigw.EndpointType.PRIVATE], policy=policy, cloud_watch_role=False,
        binary_media_types=["application/octet-stream"],
        deploy_options=apigw.StageOptions(stage_name="v1", throttling_rate_limit=100, throttling_burst_limit=50,
                                          access_log_destination=apigw.LogGroupLogDestination(access_logs),
                                          access_log_format=apigw.AccessLogFormat.custom(LOG_FORMAT)),
        default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM,
                                                   api_key_required=True))
    integration = apigw.LambdaIntegration(echo)
    residents = api.root.add_resource("residents")
    residents.add_method("POST", integration)
    residents.add_resource("{code}").add_method("GET", integration)
    api.root.add_resource("fail").add_method("GET", integration)
    api.root.add_resource("malformed").add_method("GET", integration)
    api.root.add_resource("files").add_resource("{proxy+}").add_method("ANY", integration)
    key = api.add_api_key("Key", api_key_name="toy-key", value=API_KEY)
    plan = api.add_usage_plan("Plan", throttle=apigw.ThrottleSettings(rate_limit=10, burst_limit=5))
    plan.add_api_stage(stage=api.deployment_stage)
    plan.add_api_key(key)
    cdk.CfnOutput(stack, "CallerArn", value=caller.role_arn)
    app.synth()


# -- fixtures: one synth, one server, one deployment, one API per module -----------------------------


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-api")
    package = root / "code" / "toy_api"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(HANDLER_CODE)
    build_api_app(root / "cdk.out", root / "code")
    return root / "cdk.out"


@pytest.fixture(scope="module")
def deployed(assembly: Path):
    with MotoServer() as aws:
        yield deploy_assembly(assembly, aws.endpoint_url)


@pytest.fixture(scope="module")
def runner(deployed: DeployedEnvironment):
    with LocalRunner(deployed) as r:
        yield r


@pytest.fixture(scope="module")
def caller_arn(deployed: DeployedEnvironment) -> str:
    return deployed.stacks["ToyApi"].outputs["CallerArn"]


@pytest.fixture(scope="module")
def principals(caller_arn: str) -> dict[str, LocalPrincipal]:
    return local_principals({caller_arn: VPCE, STRANGER: VPCE}, api_keys={caller_arn: API_KEY, STRANGER: API_KEY})


@pytest.fixture(scope="module")
def api(deployed: DeployedEnvironment, runner: LocalRunner, principals: dict[str, LocalPrincipal]):
    with LocalApi(deployed, runner, credentials=principals) as served:
        yield served


@pytest.fixture
def caller(principals: dict[str, LocalPrincipal], caller_arn: str) -> LocalPrincipal:
    return principals[caller_arn]


def _echo_invocations(runner: LocalRunner) -> int:
    [name] = [n for n in runner.functions if n.startswith("ToyApi-Echo")]
    return runner.stats[name].invocations


def _signed(principal: LocalPrincipal, method: str, url: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> AWSRequest:
    """A request signed the way any AWS SDK signs it: botocore's SigV4Auth on an AWSRequest."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}, **{"x-api-key": API_KEY}))
    credentials = Credentials(principal.access_key_id, principal.secret_access_key, principal.session_token)
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return request


def _urlopen(request: AWSRequest) -> tuple[int, dict[str, str], bytes]:
    prepared = request.prepare()
    response = send(prepared.method, prepared.url, prepared.body or b"", dict(prepared.headers.items()))
    return response.status, response.headers, response.body


# -- deployment ----------------------------------------------------------------------------------


@slow
def test_api_gateway_resources_are_deployed_and_read_back_from_moto(deployed: DeployedEnvironment, api: LocalApi,
                                                                    caller_arn: str):
    states = {r.resource_type: r.state for r in deployed.stacks["ToyApi"].resources
              if r.resource_type.startswith("AWS::ApiGateway::")}
    assert states == {"AWS::ApiGateway::RestApi": "CREATED", "AWS::ApiGateway::Resource": "CREATED",
                      "AWS::ApiGateway::Method": "CREATED", "AWS::ApiGateway::Deployment": "CREATED",
                      "AWS::ApiGateway::Stage": "CREATED_VIA_API", "AWS::ApiGateway::ApiKey": "CREATED_VIA_API",
                      "AWS::ApiGateway::UsagePlan": "CREATED_VIA_API",
                      "AWS::ApiGateway::UsagePlanKey": "CREATED_VIA_API"}
    rest_api = deployed.client("apigateway").get_rest_api(restApiId=api.api_id)
    assert rest_api["endpointConfiguration"]["types"] == ["PRIVATE"]
    stage = deployed.client("apigateway").get_stage(restApiId=api.api_id, stageName="v1")
    assert stage["accessLogSettings"]["format"] == LOG_FORMAT
    assert stage["methodSettings"]["*/*"]["throttlingRateLimit"] == 100  # stored, not enforced
    assert caller_arn in rest_api["policy"]  # resolved by moto, applied by the deployer
    assert api.private and api.stage == "v1" and api.url.endswith("/v1")
    assert api.api_keys == {"toy-key": API_KEY}
    assert {(m.http_method, m.resource_path) for m in api.routes} == {
        ("POST", "/residents"), ("GET", "/residents/{code}"), ("GET", "/fail"), ("GET", "/malformed"),
        ("ANY", "/files/{proxy+}")}
    assert all(m.function and m.authorization_type == "AWS_IAM" and m.api_key_required for m in api.routes)
    features = {n.feature for n in api.not_emulated}
    assert "API Gateway throttling and quotas" in features
    assert {"API Gateway throttling and quotas", "API Gateway method settings"} <= {
        n.feature for n in deployed.not_emulated}


# -- a signed call reaches the function ------------------------------------------------------------


@slow
def test_botocore_signed_request_reaches_the_function_with_the_caller_identity(api: LocalApi, runner: LocalRunner,
                                                                              caller: LocalPrincipal):
    before = _echo_invocations(runner)
    status, headers, body = _urlopen(_signed(caller, "GET", f"{api.url}/residents/200001-0001"))
    assert status == 200, body
    assert headers["X-Echo"] == "1" and headers["Content-Type"] == "application/json"
    assert _echo_invocations(runner) == before + 1
    echoed = json.loads(body)
    event = echoed["event"]
    identity = event["requestContext"]["identity"]
    assert identity["userArn"] == caller.session_arn == "arn:aws:sts::123456789012:assumed-role/" \
        + caller.role_name + "/local"
    assert identity["vpceId"] == VPCE
    assert identity["accessKey"] == caller.access_key_id and identity["accountId"] == ACCOUNT
    assert identity["caller"].startswith("AROA") and identity["caller"].endswith(":local")
    assert identity["apiKey"] == API_KEY and identity["apiKeyId"]
    assert identity["sourceIp"] == "127.0.0.1"
    assert event["resource"] == "/residents/{code}" and event["path"] == "/residents/200001-0001"
    assert event["pathParameters"] == {"code": "200001-0001"}
    assert event["queryStringParameters"] is None and event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert (context["stage"], context["apiId"], context["accountId"]) == ("v1", api.api_id, ACCOUNT)
    assert (context["resourcePath"], context["httpMethod"], context["path"]) == (
        "/residents/{code}", "GET", "/v1/residents/200001-0001")
    assert context["requestId"] == headers["x-amzn-RequestId"]
    assert abs(context["requestTimeEpoch"] / 1000 - time.time()) < 60
    assert event["headers"]["x-amzn-vpce-id"] == VPCE
    assert "X-Jukinet-Local-Source-Vpce" not in event["headers"]
    assert echoed["function"].startswith("ToyApi-Echo")


@slow
def test_multi_value_response_headers_are_merged(api: LocalApi, caller: LocalPrincipal):
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(urllib.request.Request(
            f"{api.url}/residents/x", headers=sign_request(caller, "GET", f"{api.url}/residents/x", REGION))) as r:
        assert r.headers.get_all("X-Many") == ["a", "b"]


@slow
def test_query_strings_and_encoded_path_parameters_reach_the_event(api: LocalApi, caller: LocalPrincipal):
    code = urllib.parse.quote("住民 A/1", safe="")
    url = f"{api.url}/residents/{code}?b=2&a=1&a=3&empty=&name={urllib.parse.quote('山田 太郎~')}"
    status, _, body = _urlopen(_signed(caller, "GET", url))
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["pathParameters"] == {"code": "住民 A/1"}
    assert event["queryStringParameters"] == {"a": "3", "b": "2", "empty": "", "name": "山田 太郎~"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "3"], "b": ["2"], "empty": [""],
                                                        "name": ["山田 太郎~"]}


@slow
def test_post_body_and_greedy_proxy_path_with_requests(api: LocalApi, caller: LocalPrincipal):
    import requests

    payload = json.dumps({"names": ["山田 太郎"]}).encode()
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for 127.0.0.1
        prepared = _signed(caller, "POST", f"{api.url}/residents", payload,
                           {"Content-Type": "application/json"}).prepare()
        response = session.send(requests.Request(prepared.method, prepared.url, headers=dict(prepared.headers.items()),
                                                 data=prepared.body).prepare())
        assert response.status_code == 201, response.text
        event = response.json()["event"]
        assert json.loads(event["body"]) == {"names": ["山田 太郎"]}
        assert event["resource"] == "/residents" and event["pathParameters"] is None

        prepared = _signed(caller, "DELETE", f"{api.url}/files/2026/11/a.csv").prepare()
        response = session.send(requests.Request(prepared.method, prepared.url,
                                                 headers=dict(prepared.headers.items())).prepare())
        assert response.status_code == 200, response.text
        event = response.json()["event"]
        assert (event["resource"], event["httpMethod"]) == ("/files/{proxy+}", "DELETE")
        assert event["pathParameters"] == {"proxy": "2026/11/a.csv"}


@slow
def test_binary_media_types_are_base64_both_ways(api: LocalApi, caller: LocalPrincipal):
    assert api.binary_media_types == ["application/octet-stream"]
    payload = bytes(range(256))
    response = api.request(caller, "PUT", "/files/raw.bin", body=payload,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status == 200, response.body
    assert response.body == payload and response.headers["Content-Type"] == "application/octet-stream"


@slow
def test_request_helper_signs_with_the_session_token(api: LocalApi, caller: LocalPrincipal):
    response = api.request(caller, "GET", "/residents/1", query={"q": "a b"})
    assert response.status == 200, response.body
    assert response.json()["event"]["queryStringParameters"] == {"q": "a b"}


@slow
def test_concurrent_requests_are_served_one_invocation_at_a_time(api: LocalApi, caller: LocalPrincipal):
    results: list[int] = []

    def call(i: int) -> None:
        results.append(api.request(caller, "GET", f"/residents/{i}").status)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6


# -- refused at the gateway ----------------------------------------------------------------------


@slow
def test_tampered_body_fails_the_signature_and_invokes_nothing(api: LocalApi, runner: LocalRunner,
                                                               caller: LocalPrincipal):
    request = _signed(caller, "POST", f"{api.url}/residents", b'{"names": ["a"]}')
    request.data = b'{"names": ["b"]}'
    before = _echo_invocations(runner)
    status, headers, body = _urlopen(request)
    assert status == 403
    assert json.loads(body)["message"].startswith("The request signature we calculated does not match the "
                                                  "signature you provided")
    assert headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert _echo_invocations(runner) == before


@slow
def test_unknown_access_key_is_an_invalid_security_token(api: LocalApi, caller: LocalPrincipal):
    unknown = dataclasses.replace(caller, access_key_id="ASIAUNKNOWNUNKNOWN00")
    status, _, body = _urlopen(_signed(unknown, "GET", f"{api.url}/residents/1"))
    assert (status, json.loads(body)) == (403, {"message": "The security token included in the request is invalid."})


@slow
def test_session_credentials_need_their_token(api: LocalApi, caller: LocalPrincipal):
    status, _, body = _urlopen(_signed(dataclasses.replace(caller, session_token=None), "GET",
                                       f"{api.url}/residents/1"))
    assert (status, json.loads(body)["message"]) == (403, "The security token included in the request is invalid.")


@slow
def test_unsigned_request_is_missing_authentication_token(api: LocalApi):
    response = send("GET", f"{api.url}/residents/1", b"", {"x-api-key": API_KEY})
    assert (response.status, response.json()) == (403, {"message": "Missing Authentication Token"})
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


@slow
def test_signature_older_than_fifteen_minutes_is_expired(api: LocalApi, caller: LocalPrincipal,
                                                         monkeypatch: pytest.MonkeyPatch):
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=16)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    request = _signed(caller, "GET", f"{api.url}/residents/1")
    monkeypatch.undo()
    status, _, body = _urlopen(request)
    assert status == 403 and json.loads(body)["message"].startswith("Signature expired: ")


@slow
def test_principal_not_allowed_by_the_policy_is_refused_before_the_function(api: LocalApi, runner: LocalRunner,
                                                                          principals: dict[str, LocalPrincipal]):
    stranger = principals[STRANGER]
    before = _echo_invocations(runner)
    status, _, body = _urlopen(_signed(stranger, "GET", f"{api.url}/residents/1"))
    resource = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api.api_id}/v1/GET/residents/1"
    assert (status, json.loads(body)["message"]) == (
        403, f"User: {stranger.session_arn} is not authorized to perform: execute-api:Invoke on resource: {resource}")
    assert _echo_invocations(runner) == before


@slow
def test_call_from_an_endpoint_the_policy_does_not_name_is_an_explicit_deny(api: LocalApi, runner: LocalRunner,
                                                                           caller: LocalPrincipal):
    before = _echo_invocations(runner)
    response = api.request(caller, "GET", "/residents/1", headers={"X-Jukinet-Local-Source-Vpce": OTHER_VPCE})
    assert response.status == 403
    assert response.json()["message"].endswith(f"{api.api_id}/v1/GET/residents/1 with an explicit deny")
    assert response.json()["message"].startswith(f"User: {caller.session_arn} is not authorized")
    assert _echo_invocations(runner) == before


@slow
def test_unknown_path_method_or_stage_is_refused_like_api_gateway(api: LocalApi, caller: LocalPrincipal):
    unknown_path = api.request(caller, "GET", "/nowhere/1")
    assert (unknown_path.status, unknown_path.json()) == (403, {"message": "Missing Authentication Token"})
    wrong_method = api.request(caller, "DELETE", "/residents/1")  # REST APIs answer 403, not 405
    assert (wrong_method.status, wrong_method.json()) == (403, {"message": "Missing Authentication Token"})
    unproxied = api.request(caller, "GET", "/files")  # {proxy+} needs at least one segment
    assert unproxied.status == 403
    other_stage = send("GET", api.url.replace("/v1", "/v2") + "/residents/1", b"", {})
    assert (other_stage.status, other_stage.json()) == (403, {"message": "Forbidden"})


@slow
def test_api_key_is_required_and_checked(api: LocalApi, caller: LocalPrincipal):
    without = api.request(dataclasses.replace(caller, api_key=None), "GET", "/residents/1")
    assert (without.status, without.json()) == (403, {"message": "Forbidden"})
    wrong = api.request(dataclasses.replace(caller, api_key="not-a-deployed-key-000000"), "GET", "/residents/1")
    assert (wrong.status, wrong.json()) == (403, {"message": "Forbidden"})


# -- the integration -----------------------------------------------------------------------------


@slow
def test_function_exception_is_a_502(api: LocalApi, caller: LocalPrincipal):
    response = api.request(caller, "GET", "/fail")
    assert (response.status, response.json()) == (502, {"message": "Internal server error"})


@slow
def test_malformed_proxy_response_is_a_502(api: LocalApi, caller: LocalPrincipal):
    response = api.request(caller, "GET", "/malformed")
    assert (response.status, response.json()) == (502, {"message": "Internal server error"})


@slow
def test_a_failure_outside_the_gateway_is_a_500_never_an_empty_reply(api: LocalApi, caller: LocalPrincipal,
                                                                     monkeypatch):
    # E.g. the clock or the access-log write failing: the caller still gets an answer.
    monkeypatch.setattr(api, "_access_log", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    response = api.request(caller, "GET", "/fail")
    assert (response.status, response.json()) == (500, {"message": "Internal server error"})


# -- access logs ---------------------------------------------------------------------------------


@slow
def test_access_log_lines_land_in_the_deployed_log_group(api: LocalApi, deployed: DeployedEnvironment,
                                                        caller: LocalPrincipal):
    ok = api.request(caller, "GET", "/residents/logged")
    refused = api.request(caller, "GET", "/residents/logged", headers={"X-Jukinet-Local-Source-Vpce": OTHER_VPCE})
    failed = api.request(caller, "GET", "/fail")
    assert api.access_log_group is not None
    group = api.access_log_group[2]
    events = deployed.client("logs").filter_log_events(logGroupName=group)["events"]
    lines = {line["requestId"]: line for line in (json.loads(e["message"]) for e in events)}

    line = lines[ok.headers["x-amzn-RequestId"]]
    assert line["userArn"] == caller.session_arn and line["vpceId"] == VPCE
    assert (line["status"], line["httpMethod"], line["resourcePath"]) == ("200", "GET", "/residents/{code}")
    assert (line["accountId"], line["sourceIp"], line["protocol"]) == (ACCOUNT, "127.0.0.1", "HTTP/1.1")
    assert line["caller"].startswith("AROA") and int(line["responseLength"]) == len(ok.body)
    assert (line["error"], line["integrationError"], line["unknown"], line["errorString"]) == ("-", "-", "-", "-")

    denied = lines[refused.headers["x-amzn-RequestId"]]
    assert (denied["status"], denied["vpceId"], denied["userArn"]) == ("403", OTHER_VPCE, caller.session_arn)
    assert denied["error"].endswith("with an explicit deny") and denied["errorString"] == denied["error"]
    assert denied["type"] == "ACCESS_DENIED"

    broken = lines[failed.headers["x-amzn-RequestId"]]
    assert broken["status"] == "502" and "boom" in broken["integrationError"]
    assert broken["errorString"] == "Internal server error"
    assert json.loads(api.access_log[-1])["requestId"] == failed.headers["x-amzn-RequestId"]


# -- unit tests: no synth ------------------------------------------------------------------------

ROLE = "arn:aws:iam::111122223333:role/agency/nenkin-provision"


def _policy(*statements: dict) -> ResourcePolicy:
    return ResourcePolicy({"Version": "2012-10-17", "Statement": list(statements)}, region=REGION,
                          account=ACCOUNT, api_id="abc123")


def _principal(vpce: str | None = VPCE, arn: str = ROLE) -> LocalPrincipal:
    return local_principals({arn: vpce})[arn]


RESOURCE = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc123/v1/GET/residents/1"


def test_policy_explicit_deny_wins_over_allow():
    policy = _policy(
        {"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "execute-api:Invoke", "Resource": "execute-api:/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "execute-api:*", "Resource": "execute-api:/*",
         "Condition": {"StringNotEquals": {"aws:SourceVpce": [VPCE, "vpce-other"]}}})
    principal = _principal()
    assert policy.evaluate(resource_arn=RESOURCE, principal=principal, source_vpce=VPCE) == "allow"
    assert policy.evaluate(resource_arn=RESOURCE, principal=principal, source_vpce="vpce-x") == "explicit-deny"
    assert policy.evaluate(resource_arn=RESOURCE, principal=principal, source_vpce=None) == "explicit-deny"
    stranger = _principal(arn="arn:aws:iam::111122223333:role/other")
    assert policy.evaluate(resource_arn=RESOURCE, principal=stranger, source_vpce=VPCE) == "implicit-deny"
    assert policy.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=VPCE) == "implicit-deny"


def test_policy_resource_patterns_and_principal_forms():
    policy = _policy({"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "execute-api:Invoke",
                      "Resource": "execute-api:/v1/GET/residents/*"})
    assert policy.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=VPCE) == "allow"
    assert policy.evaluate(resource_arn=RESOURCE.replace("/GET/", "/POST/"), principal=_principal(),
                           source_vpce=VPCE) == "implicit-deny"
    session = _policy({"Effect": "Allow", "Principal": {"AWS": _principal().session_arn},
                       "Action": "execute-api:Invoke", "Resource": RESOURCE})
    assert session.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=None) == "allow"


def test_policy_arn_conditions_on_the_principal_arn():
    policy = _policy(
        {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
         "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/agency/*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
         "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::*:role/agency/nenkin-*"]},
                       "StringEquals": {"aws:SourceVpce": VPCE}}})
    assert policy.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=VPCE) == "allow"
    other = _principal(arn="arn:aws:iam::111122223333:role/agency/other")
    assert policy.evaluate(resource_arn=RESOURCE, principal=other, source_vpce=VPCE) == "explicit-deny"
    assert policy.evaluate(resource_arn=RESOURCE, principal=other, source_vpce="vpce-x") == "allow"
    # ArnLike matches each ARN part on its own: a wildcard does not swallow the account separator.
    narrow = _policy({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
                      "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333*"}}})
    assert narrow.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=VPCE) == "implicit-deny"


def test_policy_principal_forms_anonymous_callers_and_the_account():
    """Every principal form the stacks write, as the one IAM evaluator (``iam_policy``) reads it:
    ``{"AWS": "*"}`` (CDK's ``AnyPrincipal``) matches an unsigned caller too; the account root and
    the bare account id match any role of the account; a role ARN matches its sessions."""
    anyone = _policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "execute-api:Invoke",
                      "Resource": "execute-api:/*"})
    assert anyone.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=None) == "allow"
    root = _policy({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                    "Action": "execute-api:Invoke", "Resource": "execute-api:/*"})
    assert root.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=None) == "allow"
    assert root.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=None) == "implicit-deny"
    elsewhere = _principal(arn="arn:aws:iam::444455556666:role/agency/nenkin-provision")
    assert root.evaluate(resource_arn=RESOURCE, principal=elsewhere, source_vpce=None) == "implicit-deny"
    role = _policy({"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "execute-api:Invoke",
                    "Resource": "execute-api:/*"})
    assert role.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=None) == "allow"
    assert role.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=None) == "implicit-deny"


def test_policy_string_conditions_on_the_principal_arn_and_absent_keys():
    """``StringEquals``/``StringNotEquals`` on ``aws:PrincipalArn``, and IAM's rule for a key the
    request lacks (an unsigned call has no principal ARN, a direct call no endpoint): a negated
    operator holds, a positive one does not. Operators are read whatever their case, as before."""
    policy = _policy(
        {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
         "Condition": {"stringequals": {"aws:PrincipalArn": ROLE}}},
        {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
         "Condition": {"StringNotEquals": {"aws:PrincipalArn": [ROLE]}}})
    assert policy.evaluate(resource_arn=RESOURCE, principal=_principal(), source_vpce=None) == "allow"
    other = _principal(arn="arn:aws:iam::111122223333:role/agency/other")
    assert policy.evaluate(resource_arn=RESOURCE, principal=other, source_vpce=None) == "explicit-deny"
    assert policy.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=None) == "explicit-deny"
    endpoint = _policy({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
                        "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/agency/other"},
                                      "StringEquals": {"aws:SourceVpce": VPCE}}})
    assert endpoint.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=VPCE) == "allow"
    assert endpoint.evaluate(resource_arn=RESOURCE, principal=None, source_vpce=None) == "implicit-deny"
    assert endpoint.evaluate(resource_arn=RESOURCE, principal=other, source_vpce=VPCE) == "implicit-deny"


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
     "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
    {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
     "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-1"}}},
    {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
     "Condition": {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}},
    {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
     "Condition": {"ArnLike": {"aws:SourceVpce": "vpce-*"}}},
    {"Effect": "Allow", "NotPrincipal": {"AWS": ROLE}, "Action": "execute-api:Invoke", "Resource": "*"},
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "execute-api:Invoke",
     "Resource": "*"},
    {"Effect": "Allow", "Principal": "*", "NotAction": "execute-api:ManageConnections", "Resource": "*"},
])
def test_policy_with_anything_else_fails_loudly(statement: dict):
    with pytest.raises(UnsupportedPolicyError):
        _policy(statement)


def test_local_principals_are_deterministic_session_credentials():
    first, again = _principal(), _principal()
    assert first == again
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", first.access_key_id)
    assert len(first.secret_access_key) == 40 and first.session_token.startswith("local/")
    assert first.session_arn == "arn:aws:sts::111122223333:assumed-role/nenkin-provision/local"
    assert (first.account, first.role_name, first.vpce_id) == ("111122223333", "nenkin-provision", VPCE)
    other = local_principals({"arn:aws:iam::111122223333:role/other": None})
    assert next(iter(other.values())).access_key_id != first.access_key_id
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        local_principals({"arn:aws:iam::111122223333:user/someone": None})


def test_access_log_rendering_substitutes_known_variables_and_dashes_the_rest():
    line = render_access_log('{"id":"$context.requestId","arn":"$context.identity.userArn",'
                             '"msg":"$context.error.message","x":"$context.whatever.else",'
                             '"quoted":$context.error.messageString} $context.status.',
                             {"requestId": "r-1", "identity.userArn": None, "error.message": 'say "no"',
                              "error.messageString": RawValue(json.dumps('say "no"')), "status": 403})
    assert line == '{"id":"r-1","arn":"-","msg":"say \\"no\\"","x":"-","quoted":"say \\"no\\""} 403.'
    parsed = json.loads(line.rsplit(" ", 1)[0])
    assert parsed["msg"] == parsed["quoted"] == 'say "no"'
