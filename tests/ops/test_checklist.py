"""The security checklist without AWS: checks over fake clients, rendering, exit codes, the command.

The checks against a deployed environment (and each misconfiguration they detect) are in
tests/e2e/test_checklist.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.config import load_deployment
from infra.naming import NATIONAL, Names
from jukinet_ops import checklist as chk
from jukinet_ops.checklist import CHECKS, Audit, Finding, Inspection, Status, Target
from jukinet_ops.cli import build_parser, main

DEPLOYMENT = load_deployment("nagano-demo")
NAMES = Names.of(DEPLOYMENT)
ENV = DEPLOYMENT.national.env
SCOPE = ("tier", "pref-200000")
CMK = "arn:aws:kms:ap-northeast-1:123456789012:key/11111111-2222-3333-4444-555555555555"
OTHER = "arn:aws:kms:ap-northeast-1:123456789012:key/99999999-2222-3333-4444-555555555555"


# --- fakes ------------------------------------------------------------------------------------


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (fake)"}}, "FakeOperation")


def raises(code: str) -> Callable[..., Any]:
    def call(**_: Any) -> Any:
        raise error(code)
    return call


def answers(value: Any) -> Callable[..., Any]:
    return lambda **_: value


class Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


class Fake:
    """A boto3-ish client: the methods given, paginators by operation name."""

    def __init__(self, paginators: dict[str, list[dict[str, Any]]] | None = None, **methods: Callable[..., Any]):
        self.__dict__.update(methods)
        self._paginators = paginators or {}

    def get_paginator(self, operation: str) -> Pages:
        return Pages(self._paginators[operation])


def kms(aliases: dict[str, str] | None = None, keys: dict[str, dict[str, Any]] | None = None, **more: Any) -> Fake:
    """KMS knowing ``keys`` (key ARN -> metadata overrides) and ``aliases`` (alias -> key ARN)."""
    aliases = aliases if aliases is not None else {"alias/jukinet/pref-200000/at-rest": CMK}
    keys = keys if keys is not None else {CMK: {}, OTHER: {}}

    def describe_key(KeyId: str) -> dict[str, Any]:
        arn = aliases.get(KeyId, KeyId)
        if arn not in keys:
            raise error("NotFoundException")
        return {"KeyMetadata": {"KeyId": arn.rsplit("/", 1)[-1], "Arn": arn, "KeySpec": "SYMMETRIC_DEFAULT",
                                "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "KeyManager": "CUSTOMER",
                                **keys[arn]}}
    alias_list = [{"AliasName": a, "TargetKeyId": k.rsplit("/", 1)[-1]} for a, k in aliases.items()]
    return Fake(paginators={"list_aliases": [{"Aliases": alias_list}]}, describe_key=describe_key, **more)


def inspection(local: bool = False, today: dt.date = dt.date(2026, 1, 5), **clients: Any) -> Inspection:
    return Inspection(DEPLOYMENT, lambda service, env: clients[service], local=local, today=today)


def only(findings: list[Finding], check_id: str) -> Finding:
    [found] = [f for f in findings if f.check_id == check_id]
    return found


# --- buckets ----------------------------------------------------------------------------------

TLS_ONLY = json.dumps({"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                                      "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                                      "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def s3(encryption: dict[str, Any] | None = None, policy: str | None = TLS_ONLY, **more: Any) -> Fake:
    rules = [{"ApplyServerSideEncryptionByDefault": encryption}] if encryption else None
    return Fake(
        get_bucket_encryption=answers({"ServerSideEncryptionConfiguration": {"Rules": rules}}) if rules
        else raises("ServerSideEncryptionConfigurationNotFoundError"),
        get_public_access_block=answers({"PublicAccessBlockConfiguration": dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True)}),
        get_bucket_policy=answers({"Policy": policy}) if policy else raises("NoSuchBucketPolicy"),
        get_bucket_versioning=answers({"Status": "Enabled"}), **more)


def test_a_bucket_under_the_tiers_key_passes_every_bucket_check():
    ins = inspection(s3=s3({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": CMK}), kms=kms())
    found = chk.check_bucket(ins, ENV, "b", "alias/jukinet/pref-200000/at-rest", SCOPE)
    assert [(f.check_id, f.status) for f in found] == [(c, Status.PASS) for c in ("S3-1", "S3-2", "S3-3", "S3-4")]
    assert "alias/jukinet/pref-200000/at-rest" in only(found, "S3-1").evidence


@pytest.mark.parametrize(("encryption", "why"), [
    (None, "no default encryption configured"),
    ({"SSEAlgorithm": "AES256"}, "AES256, not SSE-KMS"),
    ({"SSEAlgorithm": "aws:kms"}, "AWS managed key aws/s3"),
    ({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": OTHER}, "not the tier's key"),
])
def test_a_bucket_not_under_the_tiers_key_fails(encryption, why):
    ins = inspection(s3=s3(encryption), kms=kms())
    finding = only(chk.check_bucket(ins, ENV, "b", "alias/jukinet/pref-200000/at-rest", SCOPE), "S3-1")
    assert finding.status is Status.FAIL and why in finding.evidence and finding.resource == "b"


def test_a_missing_tls_only_statement_fails_in_the_cloud_and_is_not_verifiable_locally():
    for local, status in ((False, Status.FAIL), (True, Status.NOT_VERIFIABLE)):
        ins = inspection(local=local, s3=s3({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": CMK}, policy=None),
                         kms=kms())
        finding = only(chk.check_bucket(ins, ENV, "b", "alias/jukinet/pref-200000/at-rest", SCOPE), "S3-3")
        assert finding.status is status and "no bucket policy" in finding.evidence


# --- functions --------------------------------------------------------------------------------


def test_secrets_are_named_by_variable_never_by_value():
    found = chk.secret_variables({
        "DB_PASSWORD": "hunter2", "API_KEY": "abc", "CONFIG": "https://user:pa55@db.example.jp/x",
        "X": "AKIAABCDEFGHIJKLMNOP", "PEM": "-----BEGIN EC PRIVATE KEY-----\nMHc...",
        "SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:x",
        "SIGNING_KEY_ID": "arn:aws:kms:ap-northeast-1:123456789012:key/1", "TABLE_NAME": "t", "TOKEN_TTL": "",
    })
    assert [f.split(" ")[0] for f in found] == ["API_KEY", "CONFIG", "DB_PASSWORD", "PEM", "X"]
    assert not any("hunter2" in f or "pa55" in f or "AKIA" in f for f in found)


def test_a_function_url_or_a_public_permission_fails_fn2():
    with_url = Fake(get_function_url_config=answers({"FunctionUrl": "https://x.lambda-url", "AuthType": "NONE"}))
    public = Fake(get_function_url_config=raises("ResourceNotFoundException"), get_policy=answers({"Policy": json.dumps(
        {"Statement": [{"Sid": "Open", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction"}]})}))
    closed = Fake(get_function_url_config=raises("ResourceNotFoundException"), get_policy=raises(
        "ResourceNotFoundException"))
    assert chk._function_not_public(inspection(**{"lambda": with_url}), ENV, "f", SCOPE).status is Status.FAIL
    assert "Open" in chk._function_not_public(inspection(**{"lambda": public}), ENV, "f", SCOPE).evidence
    assert chk._function_not_public(inspection(**{"lambda": closed}), ENV, "f", SCOPE).status is Status.PASS


# --- tables, network, API ----------------------------------------------------------------------


def dynamodb(sse: dict[str, Any] | None, pitr: str = "ENABLED") -> Fake:
    return Fake(describe_table=answers({"Table": {"SSEDescription": sse, "DeletionProtectionEnabled": True}}),
                describe_continuous_backups=answers({"ContinuousBackupsDescription": {
                    "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": pitr}}}))


def test_table_encryption_unreadable_locally_is_not_verifiable_but_fails_in_the_cloud():
    assert only(chk.check_table(inspection(local=True, dynamodb=dynamodb(None)), ENV, "t", SCOPE),
                "DB-1").status is Status.NOT_VERIFIABLE
    assert only(chk.check_table(inspection(dynamodb=dynamodb(None)), ENV, "t", SCOPE), "DB-1").status is Status.FAIL
    kms_sse = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": CMK}
    found = chk.check_table(inspection(dynamodb=dynamodb(kms_sse, pitr="DISABLED"), kms=kms()), ENV, "t", SCOPE)
    assert [(f.check_id, f.status) for f in found] == [
        ("DB-1", Status.PASS), ("DB-2", Status.FAIL), ("DB-3", Status.PASS)]


def ec2_with_default_group(ingress: list, egress: list) -> Fake:
    return Fake(describe_security_groups=answers({"SecurityGroups": [
        {"GroupId": "sg-1", "IpPermissions": ingress, "IpPermissionsEgress": egress}]}))


def test_the_default_security_group_open_only_as_moto_creates_it_is_not_verifiable_locally():
    moto_default = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [],
                     "UserIdGroupPairs": [], "PrefixListIds": []}]
    ssh = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]

    def status(local: bool, ingress: list, egress: list) -> Status:
        ins = inspection(local=local, ec2=ec2_with_default_group(ingress, egress))
        return chk._default_group_closed(ins, ENV, "t", "vpc-1", SCOPE, "vpc-1 (t)").status
    assert status(True, [], moto_default) is Status.NOT_VERIFIABLE
    assert status(False, [], moto_default) is Status.FAIL
    assert status(True, ssh, moto_default) is Status.FAIL  # someone opened it: a miss even locally
    assert status(False, [], []) is Status.PASS


def test_only_local_and_endpoint_routes_pass_net3():
    def routes(*extra: dict[str, str]) -> Fake:
        return Fake(describe_route_tables=answers({"RouteTables": [{"RouteTableId": "rtb-1", "Routes": [
            {"DestinationCidrBlock": "10.20.0.0/22", "GatewayId": "local"},
            {"DestinationPrefixListId": "pl-1", "GatewayId": "vpce-1"}, *extra]}]}))
    ok = chk._no_default_route(inspection(ec2=routes()), ENV, "t", "vpc-1", SCOPE, "r")
    via_endpoint = chk._no_default_route(inspection(ec2=routes(
        {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "vpce-gwlb"})), ENV, "t", "vpc-1", SCOPE, "r")
    nat = chk._no_default_route(inspection(ec2=routes(
        {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1"})), ENV, "t", "vpc-1", SCOPE, "r")
    peer = chk._no_default_route(inspection(ec2=routes(
        {"DestinationIpv6CidrBlock": "::/0", "VpcPeeringConnectionId": "pcx-1"})), ENV, "t", "vpc-1", SCOPE, "r")
    assert (ok.status, via_endpoint.status, nat.status, peer.status) == (
        Status.PASS, Status.PASS, Status.FAIL, Status.FAIL)
    assert "0.0.0.0/0 -> nat-1" in nat.evidence


def test_the_provision_api_policy_is_read_as_api_gateway_escapes_it():
    policy = {"Statement": [{"Sid": "DenyOutsideConfiguredEndpoints", "Effect": "Deny", "Principal": {"AWS": "*"},
                             "Action": "execute-api:Invoke", "Resource": "execute-api:/*",
                             "Condition": {"StringNotEquals": {"aws:SourceVpce": ["vpce-0de000000000c0001"]}}}]}
    escaped = json.dumps(policy).replace('"', '\\"')  # what GetRestApis returns on AWS
    api = {"id": "a1", "name": NAMES.provision_api(), "endpointConfiguration": {"types": ["PRIVATE"]},
           "policy": escaped}
    ins = inspection(apigateway=Fake(paginators={"get_rest_apis": [{"items": [api]}]}),
                     ec2=Fake(describe_vpcs=answers({"Vpcs": []})))
    found = chk.check_private_api(ins, ENV, ("tier", NATIONAL), NAMES.provision_api())
    assert [(f.check_id, f.status) for f in found] == [("API-1", Status.PASS), ("API-2", Status.PASS)]
    assert "vpce-0de000000000c0001 (outside this deployment's VPCs)" in found[1].evidence


def test_an_aws_error_is_a_fail_that_says_why():
    ins = inspection(dynamodb=Fake(describe_table=raises("AccessDeniedException")))
    found = chk.check_table(ins, ENV, "t", SCOPE)
    assert [f.status for f in found] == [Status.FAIL] * 3
    assert all("could not inspect" in f.evidence and "AccessDeniedException" in f.evidence for f in found)


# --- agreements -------------------------------------------------------------------------------


def agreements_zip(valid_until: str) -> bytes:
    doc = {"version": 1, "recipients": [{
        "id": "nenkin", "name": "Japan Pension Service", "name_ja": "日本年金機構", "kind": "agency",
        "principals": ["arn:aws:iam::123456789012:role/nenkin"], "vpc_endpoint_ids": ["vpce-0a000000000000001"],
        "agreements": [{"affair_code": "A1", "affair": "x", "appended_table": "別表第一", "appended_table_item": "(1)",
                        "functions": ["lookup"], "fields": ["resident_code"], "valid_from": "2009-01-01",
                        "valid_until": valid_until, "monthly_record_limit": 1}]}]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("agreements.json", json.dumps(doc))
    return buffer.getvalue()


def provision_lambda(code: bytes) -> Fake:
    sha = base64.b64encode(hashlib.sha256(code).digest()).decode()

    def get_function(FunctionName: str) -> dict[str, Any]:
        variables = {} if FunctionName.endswith("sealer") else {"AGREEMENTS_FILE": "agreements.json"}
        return {"Configuration": {"FunctionName": FunctionName, "CodeSha256": sha, "Environment": {
            "Variables": variables}}, "Code": {"Location": "https://awslambda-ap-northeast-1-tasks.s3.amazonaws.com/"
                                                           "abc.zip"}}
    return Fake(get_function=get_function)


def assets(code: bytes) -> Fake:
    return Fake(list_buckets=answers({"Buckets": [{"Name": "cdk-hnb659fds-assets-123456789012-ap-northeast-1"}]}),
                get_object=lambda Bucket, Key: {"Body": io.BytesIO(code)} if Key == "abc.zip" else None)


@pytest.mark.parametrize(("valid_until", "failing", "why"), [
    ("2026-01-04", "AGR-1", "expired: nenkin/A1 (valid until 2026-01-04)"),
    ("2026-02-04", "AGR-2", "expiring by 2026-02-04: nenkin/A1 (valid until 2026-02-04)"),
])
def test_deployed_agreements_expired_or_about_to_expire_fail(valid_until, failing, why):
    chk._CODE.clear()
    code = agreements_zip(valid_until)
    ins = inspection(local=True, today=dt.date(2026, 1, 5), s3=assets(code), **{"lambda": provision_lambda(code)})
    found = chk.check_agreements(ins, ENV, ("tier", NATIONAL))
    assert [f.check_id for f in found if f.status is Status.FAIL] == [failing]
    assert only(found, failing).evidence == why
    assert only(found, failing).resource == ("agreements.json deployed with jukinet-national-provision-api, "
                                             "jukinet-national-provision-batch")


def test_without_a_readable_deployed_copy_the_configurations_agreements_are_judged_and_said_so():
    ins = inspection(today=dt.date(2026, 1, 5), **{"lambda": Fake(get_function=raises("ResourceNotFoundException"))})
    found = chk.check_agreements(ins, ENV, ("tier", NATIONAL))
    assert [f.status for f in found] == [Status.PASS, Status.PASS]
    assert found[0].resource.startswith("agreements of the deployment configuration (no deployed copy readable")


# --- reports and exit codes -------------------------------------------------------------------

NAGANO = Target(DEPLOYMENT.prefectures[0], next(m for m in DEPLOYMENT.prefectures[0].municipality_tier.municipalities
                                                 if m.code == "202011"))


def audit(findings: list[Finding], local: bool = True) -> Audit:
    return Audit(deployment=DEPLOYMENT, targets=[NAGANO], findings=findings, target_description="the fake <AWS>",
                 local=local, today=dt.date(2026, 1, 5), generated_at=dt.datetime(2026, 1, 5, 9, 0))


HOSTILE = '<script>alert("x")</script> | a|b & c'


def sample() -> list[Finding]:
    return [
        Finding("S3-1", ("municipality", "202011"), "jukinet-dropzone-x-202011", Status.FAIL, HOSTILE),
        Finding("S3-3", ("municipality", "202011"), "jukinet-dropzone-x-202011", Status.NOT_VERIFIABLE, "moto"),
        Finding("NET-1", ("tier", "muni-200000"), "vpc-1 (muni-200000)", Status.PASS, "none"),
        Finding("Q-3", ("tier", "pref-200000"), "jukinet-pref-200000-inbound", Status.PASS, "deny"),
        Finding("AGR-1", ("tier", NATIONAL), "agreements.json", Status.PASS, "fine"),
        Finding("TRAIL-2", ("account", "123456789012/ap-northeast-1"), "jukinet-audit", Status.PASS, "logging"),
        Finding("S3-1", ("municipality", "202029"), "another municipality's bucket", Status.PASS, "x"),
    ]


@pytest.mark.parametrize(("statuses", "code"), [
    ([Status.PASS, Status.PASS], 0), ([Status.PASS, Status.NOT_VERIFIABLE], 0), ([Status.NOT_VERIFIABLE], 0),
    ([], 0), ([Status.PASS, Status.FAIL, Status.NOT_VERIFIABLE], 1), ([Status.FAIL], 1),
])
def test_the_exit_code_is_non_zero_exactly_when_something_failed(statuses, code):
    findings = [Finding("NET-1", SCOPE, "r", s, "e") for s in statuses]
    assert chk.exit_code(findings) == code
    assert audit(findings).exit_code == code


def test_the_markdown_report_holds_the_municipalitys_and_its_tiers_checks_escaped():
    md = chk.render_markdown(audit(sample()), NAGANO)
    assert md.startswith("# Security checklist — 202011 長野市 (長野県)")
    assert "Result: **FAIL** — 4 PASS, 1 FAIL, 1 NOT-VERIFIABLE-LOCALLY" in md
    for section in ("## Municipality 202011 長野市", "## Municipality tier muni-200000", "## Prefecture tier pref-200000",
                    "## National tier", "## Account 123456789012 (ap-northeast-1): audit trail"):
        assert section in md
    for check_id in ("S3-1", "S3-3", "NET-1", "Q-3", "AGR-1", "TRAIL-2"):
        assert f"| {check_id} |" in md and f"| {check_id} | {chk._md(CHECKS[check_id].title)}" in md
    assert "another municipality" not in md
    assert "<script>" not in md and "\\| a\\|b" in md  # a table cell cannot be broken out of
    assert "> NOT-VERIFIABLE-LOCALLY:" in md


def test_the_html_report_is_self_contained_and_escapes_everything():
    page = chk.render_html(audit(sample()), NAGANO)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | a|b &amp; c" in page
    assert "src=" not in page and "<link" not in page
    assert '<td class="FAIL">FAIL</td>' in page and '<td class="NOT-VERIFIABLE-LOCALLY">' in page
    assert "the fake &lt;AWS&gt;" in page
    for check_id in ("S3-1", "NET-1", "Q-3", "AGR-1", "TRAIL-2"):
        assert f"<td>{check_id}</td>" in page
    assert CHECKS["S3-1"].title_ja in page


def test_a_cloud_report_has_no_local_mode_note():
    assert "NOT-VERIFIABLE-LOCALLY:" not in chk.render_markdown(audit(sample()[2:4], local=False), NAGANO)
    assert "Result: **PASS**" in chk.render_markdown(audit(sample()[2:4], local=False), NAGANO)


def test_reports_are_written_per_municipality_with_an_index(tmp_path):
    written = chk.write_reports(audit(sample()), tmp_path / "out")
    assert sorted(p.name for p in written) == ["202011.html", "202011.md", "index.html", "index.md"]
    index = (tmp_path / "out" / "index.md").read_text(encoding="utf-8")
    assert "| 202011 | 長野市 | **FAIL** |" in index and "[html](202011.html)" in index
    assert 'href="202011.html"' in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_the_summary_names_each_failure_and_the_checks_not_verifiable():
    text = chk.summary_text(audit(sample()), "out")
    assert f"S3-1 [municipality 202011] jukinet-dropzone-x-202011: {HOSTILE}" in text
    assert "S3-3 Bucket policy refuses requests without TLS: 1 resource(s)" in text
    assert "202011 長野市: FAIL" in text and text.endswith("result: FAIL")


# --- the command ------------------------------------------------------------------------------


def test_the_command_is_registered_with_its_options():
    args = build_parser().parse_args(["checklist", "--municipality", "202011", "202029", "--municipality", "202037",
                                      "--as-of", "2028-03-10", "--out", "r"])
    assert args.func is chk.cmd_checklist
    assert args.municipality == ["202011", "202029", "202037"]
    assert args.as_of == dt.date(2028, 3, 10) and args.out == "r" and args.endpoint_url is None


def test_an_unknown_municipality_is_refused_before_any_aws_call(capsys):
    assert main(["checklist", "--municipality", "999999", "--endpoint-url", "http://127.0.0.1:9"]) == 2
    assert "not a municipality of deployment nagano-demo: 999999" in capsys.readouterr().err


def test_every_check_has_titles_in_both_languages_and_a_standard_topic():
    for check in CHECKS.values():
        assert check.title and check.title_ja and check.standard
        assert any("\u3040" <= ch <= "\u9fff" for ch in check.title_ja)
