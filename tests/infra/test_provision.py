"""The provision API's infrastructure (docs/provision.md, docs/decisions/0010): configuration,
the agreements file, and what the national and prefecture stacks synthesize for it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

import pytest

from pydantic import ValidationError

from infra.config import ConfigError, Environment, load_agencies, multi_account_example, nagano_demo
from infra.naming import Names, prefecture_tier
from infra.stacks.provision import LOG_REWRITE_ACTIONS
from jukinet.domain.agreements import AGREEMENTS_FILE, Agreement, Recipient, agreements_document

from .conftest import REPO, Synth, as_list, statements

slow = pytest.mark.slow

NATIONAL_STACK = "jukinet-national"
API_HANDLER = "jukinet.handlers.provision_api.handler"
BATCH_HANDLER = "jukinet.handlers.provision_batch.handler"
SEALER_HANDLER = "jukinet.handlers.provision_sealer.handler"
ROUTES = {("POST", "/v1/lookups"), ("POST", "/v1/searches"), ("POST", "/v1/batches"),
          ("GET", "/v1/batches/{job_id}"), ("GET", "/v1/disclosures/{resident_code}")}
REWRITES = {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLUpdate",
            "dynamodb:PartiQLDelete", "dynamodb:PartiQLInsert"}


# --- configuration (no synth) ----------------------------------------------------------------


def _agreement(**changes: Any) -> Agreement:
    base: dict[str, Any] = {
        "affair_code": "X-1", "affair": "事務", "appended_table": "別表第一", "appended_table_item": "(x)",
        "functions": frozenset({"lookup"}), "fields": frozenset({"resident_code"}),
        "valid_from": dt.date(2020, 1, 1), "valid_until": dt.date(2030, 1, 1), "monthly_record_limit": 10}
    return Agreement(**{**base, **changes})


def _agency(**changes: Any) -> Recipient:
    base: dict[str, Any] = {
        "recipient_id": "x-agency", "name": "X", "name_ja": "X", "principals": ("arn:aws:iam::123456789012:role/x/caller",),
        "vpc_endpoint_ids": ("vpce-0de000000000c0099",), "agreements": (_agreement(),)}
    return Recipient(**{**base, **changes})


def _own_use(**changes: Any) -> Recipient:
    return _agency(**{"recipient_id": "x-pref", "kind": "prefecture", "prefecture": "200000", "vpc_endpoint_ids": (),
                      "agreements": (_agreement(functions=frozenset({"own_use"})),), **changes})


@pytest.mark.parametrize(("changes", "message"), [
    ({"agreed_hours": "8:00-20:00"}, r"agreed_hours '8:00-20:00' must be \"HH:MM-HH:MM\""),
    ({"agreed_hours": "08:00-24:00"}, r"agreed_hours '08:00-24:00' must be"),
    ({"agreed_hours": "09:00-09:00"}, "must not start and end at the same time"),
    ({"functions": frozenset({"batch"})}, "max_batch_records must be positive when functions include batch"),
    ({"functions": frozenset()}, "functions must name at least one"),
])
def test_agreement_rules(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _agreement(**changes)


def test_agreed_hours_may_run_past_midnight() -> None:
    assert _agreement(agreed_hours="22:00-06:00").agreed_hours == "22:00-06:00"


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _agency(kind="ministry"), r"kind 'ministry' must be one of \['agency', 'prefecture'\]"),
    (lambda: _own_use(prefecture=None), r"kind \"prefecture\" requires prefecture"),
    (lambda: _own_use(prefecture="202011"), "202011 is not a prefecture-level code"),
    (lambda: _agency(prefecture="200000"), r"prefecture is only for kind \"prefecture\""),
    (lambda: _agency(disclosure_principals=("arn:aws:iam::123456789012:role/x/d",)),
     r"disclosure_principals are only for kind \"prefecture\""),
    (lambda: _own_use(disclosure_principals=("arn:aws:iam::123456789012:root",)),
     "disclosure_principals: 'arn:aws:iam::123456789012:root' is not an IAM role ARN"),
    (lambda: _agency(principals=("arn:aws:iam::123456789012:user/alice",)), "principals: .* is not an IAM role ARN"),
    (lambda: _agency(principals=()), "principals must name at least one IAM role"),
    (lambda: _agency(vpc_endpoint_ids=()), r"vpc_endpoint_ids must name at least one VPC endpoint \(kind \"agency\"\)"),
    (lambda: _agency(throttle_rate=0), "throttle_rate 0 must be above 0"),
    (lambda: _agency(throttle_rate=20_000.0), "throttle_rate 20000.0 must be above 0 and at most 10000"),
    (lambda: _agency(throttle_burst=0), "throttle_burst 0 must be a whole number from 1 to 5000"),
    (lambda: _agency(throttle_burst=2.5), "throttle_burst 2.5 must be a whole number"),
    (lambda: _agency(agreements=(_agreement(functions=frozenset({"own_use"})),)),
     r"function own_use is only for kind \"prefecture\""),
    (lambda: _own_use(agreements=(_agreement(functions=frozenset({"batch"}), max_batch_records=10),)),
     "has function batch, so vpc_endpoint_ids must name the S3 endpoint"),
])
def test_recipient_rules(make: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make()


def test_a_prefecture_recipient_must_name_a_configured_prefecture() -> None:
    d = nagano_demo()
    with pytest.raises(ConfigError, match=r"agency x-pref: prefecture 130001 is not a prefecture of this deployment"):
        dataclasses.replace(d, agencies=(*d.agencies, _own_use(prefecture="130001")))


def test_a_role_acts_for_one_recipient_only_even_under_another_path() -> None:
    d = nagano_demo()
    same_name = _agency(principals=("arn:aws:iam::123456789012:role/elsewhere/fsa",))
    with pytest.raises(ConfigError, match="role 'fsa' of account 123456789012 is already a principal of fsa"):
        dataclasses.replace(d, agencies=(*d.agencies, same_name))


def test_a_prefecture_in_another_account_with_own_use_needs_its_api_endpoint_id() -> None:
    d = multi_account_example()
    with pytest.raises(ConfigError, match="set its api_endpoint_id to the 'ExecuteApiEndpointId' output"):
        dataclasses.replace(d, prefectures=(dataclasses.replace(d.prefectures[0], api_endpoint_id=None),))
    with pytest.raises(ConfigError, match="api_endpoint_id 'vpce-x' is not a VPC endpoint id"):
        dataclasses.replace(d.prefectures[0], api_endpoint_id="vpce-x")


def test_unknown_toml_fields_are_refused(tmp_path: Any) -> None:
    path = tmp_path / "agencies.toml"
    path.write_text('[[agency]]\nid = "x"\nname = "X"\nname_ja = "X"\nthrottle = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agencies.toml: agency 'x': .*throttle: unknown field"):
        load_agencies(path)


# --- the agreements file ---------------------------------------------------------------------


def test_agreements_document_is_the_documented_shape_sorted_and_deterministic() -> None:
    d = nagano_demo()
    raw = agreements_document(d.agencies)
    assert raw == agreements_document(nagano_demo().agencies)
    doc = json.loads(raw)
    assert raw.decode("utf-8") == json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1) + "\n"
    assert doc["version"] == 1
    ids = [r["id"] for r in doc["recipients"]]
    assert ids == sorted(a.recipient_id for a in d.agencies)
    for r in doc["recipients"]:
        assert set(r) == {"id", "name", "name_ja", "kind", "prefecture", "principals", "vpc_endpoint_ids",
                          "disclosure_principals", "agreements"}
        for key in ("principals", "vpc_endpoint_ids", "disclosure_principals"):
            assert r[key] == sorted(r[key])
        assert [a["affair_code"] for a in r["agreements"]] == sorted(a["affair_code"] for a in r["agreements"])
        for a in r["agreements"]:
            assert set(a) == {"affair_code", "affair", "appended_table", "appended_table_item", "functions", "fields",
                              "valid_from", "valid_until", "monthly_record_limit", "max_batch_records",
                              "agreed_hours"}
            assert a["functions"] == sorted(a["functions"]) and a["fields"] == sorted(a["fields"])
            assert dt.date.fromisoformat(a["valid_from"]) < dt.date.fromisoformat(a["valid_until"])
    by_id = {r["id"]: r for r in doc["recipients"]}
    assert by_id["nagano-pref"]["kind"] == "prefecture" and by_id["nagano-pref"]["prefecture"] == "200000"
    assert by_id["nenkin"]["prefecture"] is None
    assert {a["agreed_hours"] for a in by_id["fsa"]["agreements"]} == {"08:00-20:00"}


def test_the_runtime_reads_the_agreements_file_as_written() -> None:
    from jukinet.domain.agreements import Directory, ProvisionFunction

    d = nagano_demo()
    directory = Directory.from_document(agreements_document(d.agencies), {"200000": "vpce-0pref000000000001"})
    caller = "arn:aws:sts::123456789012:assumed-role/nagano-own-use/session"
    nagano = directory.recipient_for(caller)
    assert nagano is not None and nagano.recipient_id == "nagano-pref"
    assert directory.endpoints_of(nagano) == {"vpce-0pref000000000001"}
    passport = nagano.agreement("DEMO-PREF-PASSPORT")
    assert passport is not None and passport.functions == {ProvisionFunction.OWN_USE}
    fsa = directory.get("fsa")
    assert fsa is not None and fsa.agreements[0].hours == (dt.time(8), dt.time(20))


# --- the synthesized national stack -----------------------------------------------------------


def _national(synth: Synth) -> dict[str, Any]:
    return synth.templates[NATIONAL_STACK]["Resources"]


def _only(synth: Synth, resource_type: str) -> dict[str, Any]:
    [found] = [r["Properties"] for r in _national(synth).values() if r["Type"] == resource_type]
    return found


def _table_id(synth: Synth, suffix: str) -> str:
    [lid] = [lid for lid, r in _national(synth).items()
             if r["Type"] == "AWS::DynamoDB::Table" and r["Properties"]["TableName"].endswith(suffix)]
    return lid


def _function(synth: Synth, handler: str) -> tuple[str, dict[str, Any]]:
    [(lid, props)] = [(lid, r["Properties"]) for lid, r in _national(synth).items()
                      if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == handler]
    return lid, props


def _role_policy(synth: Synth, handler: str) -> list[dict[str, Any]]:
    """Statements of the managed policy attached to the function's role."""
    resources = _national(synth)
    _, fn = _function(synth, handler)
    role = resources[fn["Role"]["Fn::GetAtt"][0]]["Properties"]
    [policy_ref] = role["ManagedPolicyArns"]
    return statements(resources[policy_ref["Ref"]]["Properties"]["PolicyDocument"])


def _refs(value: Any) -> set[str]:
    """Logical ids a policy value refers to (Ref / Fn::GetAtt, also inside Fn::Join)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for v in value.values():
            found |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= _refs(v)
    return found


def _paths(synth: Synth) -> dict[str, str]:
    """Logical id of each API Gateway resource → its full path."""
    resources = _national(synth)
    paths: dict[str, str] = {}

    def path_of(lid: str) -> str:
        if lid not in paths:
            p = resources[lid]["Properties"]
            parent = p["ParentId"]
            prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
            paths[lid] = f"{prefix}/{p['PathPart']}"
        return paths[lid]

    for lid, r in resources.items():
        if r["Type"] == "AWS::ApiGateway::Resource":
            path_of(lid)
    return paths


@slow
def test_the_api_is_private_and_every_method_is_sigv4_with_an_api_key_to_the_api_function(nagano: Synth) -> None:
    api = _only(nagano, "AWS::ApiGateway::RestApi")
    assert api["Name"] == "jukinet-provision"
    assert api["EndpointConfiguration"]["Types"] == ["PRIVATE"]
    api_fn, _ = _function(nagano, API_HANDLER)
    paths = _paths(nagano)
    routes = set()
    for r in _national(nagano).values():
        if r["Type"] != "AWS::ApiGateway::Method":
            continue
        m = r["Properties"]
        routes.add((m["HttpMethod"], paths[m["ResourceId"]["Ref"]]))
        assert m["AuthorizationType"] == "AWS_IAM"
        assert m["ApiKeyRequired"] is True
        assert m["Integration"]["Type"] == "AWS_PROXY"
        assert api_fn in _refs(m["Integration"]["Uri"])
        assert "RequestValidatorId" in m
    assert routes == ROUTES


@slow
def test_resource_policy_admits_exactly_the_configured_principals_through_the_configured_endpoints(
        every: Synth) -> None:
    d = every.deployment
    policy = statements(_only(every, "AWS::ApiGateway::RestApi")["Policy"])
    allowed = {p for s in policy if s["Effect"] == "Allow" for p in as_list(s["Principal"]["AWS"])}
    assert allowed == {p for a in d.agencies for p in a.all_principals}
    by_sid = {s["Sid"]: s for s in policy}
    assert set(as_list(by_sid["AllowDisclosureStaff"]["Principal"]["AWS"])) == {
        p for a in d.agencies for p in a.disclosure_principals}
    assert by_sid["AllowDisclosureStaff"]["Resource"] == "execute-api:/api/GET/v1/disclosures/*"
    assert not any("disclosures" in r for r in as_list(by_sid["AllowRecipients"]["Resource"]))

    [vpce] = [s for s in policy if s["Effect"] == "Deny" and "StringNotEquals" in s.get("Condition", {})]
    assert vpce["Principal"] == {"AWS": "*"} and vpce["Action"] == "execute-api:Invoke"
    assert vpce["Resource"] == "execute-api:/*"
    endpoints = as_list(vpce["Condition"]["StringNotEquals"]["aws:SourceVpce"])
    configured = {e for a in d.agencies for e in a.vpc_endpoint_ids}
    own_use = sorted({a.prefecture for a in d.agencies if a.kind == "prefecture" and a.prefecture})
    expected_prefecture = []
    names = Names.of(d)
    for code in own_use:
        p = d.prefecture(code)
        expected_prefecture.append(
            {"Fn::ImportValue": names.execute_api_endpoint_export(prefecture_tier(code))}
            if p.env == d.national.env else p.api_endpoint_id)
    assert sorted(e for e in endpoints if isinstance(e, str) and e in configured) == sorted(configured)
    assert [e for e in endpoints if not (isinstance(e, str) and e in configured)] == expected_prefecture
    # Same-account roles with a broad IAM policy are held by Denies, not by the Allows alone.
    assert by_sid["DenyRecipientRoutesToOthers"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == sorted(
        p for a in d.agencies for p in a.principals)
    assert by_sid["DenyDisclosuresToOthers"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == sorted(
        p for a in d.agencies for p in a.disclosure_principals)


@slow
def test_stage_logs_json_with_caller_and_endpoint_never_bodies_and_traces(nagano: Synth) -> None:
    stage = _only(nagano, "AWS::ApiGateway::Stage")
    assert stage["StageName"] == "api" and stage["TracingEnabled"] is True
    fmt = stage["AccessLogSetting"]["Format"]
    fields = json.loads(fmt.replace("$context.error.messageString", '"$context.error.message"'))
    assert fields["userArn"] == "$context.identity.userArn"
    assert fields["vpceId"] == "$context.identity.vpceId"
    for variable in ("requestId", "requestTime", "httpMethod", "resourcePath", "status", "protocol",
                     "responseLength", "identity.caller", "identity.accountId", "identity.sourceIp",
                     "error.message", "integrationErrorMessage"):
        assert f"$context.{variable}" in fields.values(), variable
    assert not any("body" in v.lower() for v in fields.values())
    [settings] = stage["MethodSettings"]
    assert settings["DataTraceEnabled"] is False
    assert settings["MetricsEnabled"] is True and settings["LoggingLevel"] in ("ERROR", "INFO")
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    group = _national(nagano)[stage["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1][1]["Ref"]]["Properties"]
    assert "KmsKeyId" in group and group["RetentionInDays"] > 0


@slow
def test_bodies_are_validated_against_permissive_models(nagano: Synth) -> None:
    validator = _only(nagano, "AWS::ApiGateway::RequestValidator")
    assert validator["ValidateRequestBody"] is True and validator["ValidateRequestParameters"] is True
    models = {r["Properties"]["Name"]: r["Properties"]["Schema"] for r in _national(nagano).values()
              if r["Type"] == "AWS::ApiGateway::Model"}
    assert set(models) == {"LookupRequest", "SearchRequest", "BatchRequest"}
    assert models["LookupRequest"]["required"] == ["affair_code", "resident_codes"]
    codes = models["LookupRequest"]["properties"]["resident_codes"]
    assert (codes["type"], codes["minItems"], codes["maxItems"], codes["items"]["type"]) == ("array", 1, 100, "string")
    assert models["SearchRequest"]["required"] == ["affair_code", "kana_name", "birth_date"]
    assert {"sex", "address"} <= set(models["SearchRequest"]["properties"])
    assert models["BatchRequest"]["required"] == ["affair_code", "input_key"]
    assert not any(m.get("additionalProperties") is False for m in models.values())
    paths = _paths(nagano)
    for r in _national(nagano).values():
        if r["Type"] == "AWS::ApiGateway::Method" and r["Properties"]["HttpMethod"] == "POST":
            [model] = r["Properties"]["RequestModels"].values()
            path = paths[r["Properties"]["ResourceId"]["Ref"]]
            expected = {"/v1/lookups": "LookupRequest", "/v1/searches": "SearchRequest", "/v1/batches": "BatchRequest"}
            assert _national(nagano)[model["Ref"]]["Properties"]["Name"] == expected[path]


@slow
def test_one_usage_plan_and_key_per_recipient_with_its_throttle_and_no_quota(every: Synth) -> None:
    resources = _national(every)
    plans = {r["Properties"]["UsagePlanName"]: (lid, r["Properties"]) for lid, r in resources.items()
             if r["Type"] == "AWS::ApiGateway::UsagePlan"}
    keys = {lid: r["Properties"]["Name"] for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::ApiKey"}
    links = {(r["Properties"]["UsagePlanId"]["Ref"], r["Properties"]["KeyId"]["Ref"])
             for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlanKey"}
    assert len(plans) == len(keys) == len(links) == len(every.deployment.agencies)
    for a in every.deployment.agencies:
        lid, plan = plans[f"jukinet-provision-{a.recipient_id}"]
        assert plan["Throttle"] == {"RateLimit": a.throttle_rate, "BurstLimit": a.throttle_burst}
        assert "Quota" not in plan
        [stage] = plan["ApiStages"]
        assert "Ref" in stage["Stage"]
        [key] = [k for p, k in links if p == lid]
        assert keys[key] == f"jukinet-provision-{a.recipient_id}"
    nenkin = next(a for a in every.deployment.agencies if a.recipient_id == "nenkin")
    assert (nenkin.throttle_rate, nenkin.throttle_burst) == (50, 100)  # configured, not the default


@slow
def test_provision_tables_are_encrypted_recoverable_expiring_and_the_log_is_indexed_by_day(nagano: Synth) -> None:
    resources = _national(nagano)
    aliases = {r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]: r["Properties"]["AliasName"]
               for r in resources.values() if r["Type"] == "AWS::KMS::Alias"}
    log, state = (resources[_table_id(nagano, s)]["Properties"] for s in ("-provision-log", "-provision-state"))
    assert log["TableName"] == "jukinet-national-provision-log"
    assert state["TableName"] == "jukinet-national-provision-state"
    for t in (log, state):
        sse = t["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
        assert aliases[sse["KMSMasterKeyId"]["Fn::GetAtt"][0]] == "alias/jukinet/national/provision-log"
        assert t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert t["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert t["DeletionProtectionEnabled"] is True and t["BillingMode"] == "PAY_PER_REQUEST"
    [gsi] = log["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by_day"
    assert gsi["KeySchema"] == [{"AttributeName": "day_shard", "KeyType": "HASH"},
                                {"AttributeName": "entry_ref", "KeyType": "RANGE"}]
    assert gsi["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["hash"]}
    assert "GlobalSecondaryIndexes" not in state
    policy = {s["Sid"]: s for s in statements(log["ResourcePolicy"]["PolicyDocument"])}
    assert all(s["Effect"] == "Deny" and s["Principal"] == {"AWS": "*"} for s in policy.values())
    assert all(s["Resource"] == "arn:aws:dynamodb:ap-northeast-1:123456789012:table/jukinet-national-provision-log"
               for s in policy.values())
    assert set(as_list(policy["ProvisionLogIsAppendOnly"]["Action"])) == REWRITES - {"dynamodb:UpdateItem"}
    assert set(LOG_REWRITE_ACTIONS) == REWRITES


SEALER_ROLE = "arn:aws:iam::123456789012:role/jukinet/national/jukinet-national-provision-sealer"


@slow
def test_no_writer_can_make_ttl_delete_an_entry_or_a_seal(nagano: Synth) -> None:
    """Issue 12 item 2: a role with PutItem on the log could set ``expires_at`` in the past (or
    overwrite a seal with one) and DynamoDB's TTL deleted for it. Now, for every principal but
    the sealer, the table denies PutItem carrying ``expires_at`` or naming a ``SEAL*`` partition,
    and UpdateItem altogether; the sealer may update ``expires_at`` only."""
    log = _national(nagano)[_table_id(nagano, "-provision-log")]["Properties"]
    policy = {s["Sid"]: s for s in statements(log["ResourcePolicy"]["PolicyDocument"])}
    not_sealer = {"ArnNotEquals": {"aws:PrincipalArn": SEALER_ROLE}}
    assert policy["OnlyTheSealerUpdates"]["Action"] == "dynamodb:UpdateItem"
    assert policy["OnlyTheSealerUpdates"]["Condition"] == not_sealer
    assert policy["UpdatesChangeOnlyTheExpiry"]["Condition"] == {
        "ForAnyValue:StringNotEquals": {"dynamodb:Attributes": ["pk", "sk", "expires_at"]}}
    assert policy["OnlyTheSealerSetsExpiry"]["Action"] == "dynamodb:PutItem"
    assert policy["OnlyTheSealerSetsExpiry"]["Condition"] == {
        **not_sealer, "ForAnyValue:StringEquals": {"dynamodb:Attributes": ["expires_at"]}}
    assert policy["OnlyTheSealerWritesSeals"]["Condition"] == {
        **not_sealer, "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["SEAL*"]}}
    for handler in (API_HANDLER, BATCH_HANDLER):
        role = {s.get("Sid"): s for s in _role_policy(nagano, handler)}
        assert role["WritersChooseNoExpiry"]["Effect"] == "Deny"
        assert role["WritersChooseNoExpiry"]["Condition"] == {
            "ForAnyValue:StringEquals": {"dynamodb:Attributes": ["expires_at"]}}
        assert role["WritersTouchNoSeal"]["Condition"] == {
            "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["SEAL*"]}}
    sealer = {s.get("Sid"): s for s in _role_policy(nagano, SEALER_HANDLER)}
    assert sealer["SetExpiryFromTheSealedDay"]["Action"] == "dynamodb:UpdateItem"
    assert sealer["SetExpiryFromTheSealedDay"]["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "sk", "expires_at"]}}
    assert sealer["SealerWritesNoEntry"]["Condition"] == {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["P#*"]}}


@slow
def test_every_seal_is_copied_to_an_object_locked_archive_under_its_own_key(nagano: Synth) -> None:
    resources = _national(nagano)
    [(archive_id, archive)] = [(lid, r["Properties"]) for lid, r in resources.items() if r["Type"] == "AWS::S3::Bucket"
                               and r["Properties"].get("BucketName") == "jukinet-provision-seals-123456789012-ap-northeast-1"]
    lock = archive["ObjectLockConfiguration"]
    assert archive["ObjectLockEnabled"] is True and lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert lock["Rule"]["DefaultRetention"]["Days"] >= 7 * 366
    key_id = archive["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "KMSMasterKeyID"]["Fn::GetAtt"][0]
    aliases = {r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]: r["Properties"]["AliasName"]
               for r in resources.values() if r["Type"] == "AWS::KMS::Alias"}
    assert aliases[key_id] == "alias/jukinet/national/provision-seal-archive"
    [policy] = [r["Properties"]["PolicyDocument"] for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"
                and r["Properties"]["Bucket"] == {"Ref": archive_id}]
    [only] = [s for s in statements(policy) if s.get("Sid") == "OnlyTheSealerWritesSeals"]
    assert only["Effect"] == "Deny" and only["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [SEALER_ROLE]}}
    _, sealer = _function(nagano, SEALER_HANDLER)
    assert "SEAL_ARCHIVE_BUCKET" in sealer["Environment"]["Variables"]


@slow
def test_every_role_touching_the_log_denies_rewrites_and_nothing_allows_them(every: Synth) -> None:
    log = _table_id(every, "-provision-log")
    touching = 0
    for _, _, res in every.resources("AWS::IAM::ManagedPolicy"):
        policy = statements(res["Properties"]["PolicyDocument"])
        on_log = [s for s in policy if log in _refs(s.get("Resource"))]
        if not on_log:
            continue
        touching += 1
        denies = [s for s in on_log if s["Effect"] == "Deny"]
        # The sealer alone may UpdateItem, and only expires_at (test_no_writer_can_make_ttl_delete...).
        sealer = any(s.get("Sid") == "SetExpiryFromTheSealedDay" for s in on_log)
        allowed = {"dynamodb:UpdateItem"} if sealer else set()
        assert any(REWRITES - allowed <= set(as_list(s["Action"])) for s in denies), res["Properties"]["Description"]
        for s in on_log:
            if s["Effect"] == "Allow":
                assert not set(as_list(s["Action"])) & (REWRITES - allowed), s
                assert not any(a in ("dynamodb:*", "*") for a in as_list(s["Action"]))
    assert touching == 3  # the api, batch and sealer roles
    for _, _, res in every.resources("AWS::EC2::VPCEndpoint"):  # nor does any endpoint policy
        for s in statements(res["Properties"].get("PolicyDocument", {})):
            if log in _refs(s.get("Resource")):
                extra = {"dynamodb:UpdateItem"} if s.get("Sid") == "ProvisionLogExpiryBySealer" else set()
                assert not set(as_list(s["Action"])) & (REWRITES - extra), s


@slow
def test_the_api_and_batch_roles_only_read_the_identity_table_and_only_open_national_facts(nagano: Synth) -> None:
    identity = _table_id(nagano, "national-identity")
    resources = _national(nagano)
    envelope = next(r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0] for r in resources.values()
                    if r["Type"] == "AWS::KMS::Alias" and r["Properties"]["AliasName"] == "alias/jukinet/national/envelope")
    for handler in (API_HANDLER, BATCH_HANDLER):
        policy = _role_policy(nagano, handler)
        on_identity = [s for s in policy if identity in _refs(s.get("Resource")) and s["Effect"] == "Allow"]
        assert on_identity
        for s in on_identity:
            assert set(as_list(s["Action"])) <= {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}
        on_envelope = [s for s in policy if envelope in _refs(s.get("Resource"))]
        assert [as_list(s["Action"]) for s in on_envelope] == [["kms:Decrypt"]]
        assert on_envelope[0]["Condition"] == {"StringEquals": {"kms:EncryptionContext:tier": "national"}}
    sealer = _role_policy(nagano, SEALER_HANDLER)
    assert not any(identity in _refs(s.get("Resource")) or envelope in _refs(s.get("Resource")) for s in sealer)
    [sign] = [s for s in sealer if "kms:Sign" in as_list(s["Action"])]
    assert sign["Condition"] == {"StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}


@slow
def test_the_seal_key_signs_only_for_the_sealer(nagano: Synth) -> None:
    [seal] = [k for k in nagano.props("AWS::KMS::Key") if "seal of the provision log" in k["Description"]]
    assert (seal["KeySpec"], seal["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    [sign] = [s for s in statements(seal["KeyPolicy"]) if "kms:Sign" in as_list(s["Action"])]
    assert sign["Condition"]["ArnLike"]["aws:PrincipalArn"] == [
        "arn:aws:iam::123456789012:role/jukinet/national/jukinet-national-provision-sealer"]
    assert sign["Condition"]["StringEquals"]["kms:SigningAlgorithm"] == "ECDSA_SHA_256"


@slow
def test_batch_bucket_is_kms_encrypted_and_each_recipient_reaches_only_its_prefixes_through_its_endpoints(
        nagano: Synth) -> None:
    resources = _national(nagano)
    [(lid, bucket)] = [(lid, r["Properties"]) for lid, r in resources.items() if r["Type"] == "AWS::S3::Bucket"
                       and str(r["Properties"].get("BucketName", "")).startswith("jukinet-provision-batch-")]
    assert bucket["BucketName"] == "jukinet-provision-batch-123456789012-ap-northeast-1"
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and rule["BucketKeyEnabled"] is True
    key = rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    assert resources[key]["Properties"]["Description"].startswith("national: provision batch bucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "provision-batch/"
    expiry = {r["Prefix"]: r["ExpirationInDays"] for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert expiry == {"in/": 30, "out/": 30}

    [policy] = [statements(r["Properties"]["PolicyDocument"]) for r in resources.values()
                if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": lid}]
    arn = f"arn:aws:s3:::{bucket['BucketName']}"
    allows = [s for s in policy if s["Effect"] == "Allow"]
    batch = {a.recipient_id: a for a in nagano.deployment.agencies if a.uses_batch}
    assert set(batch) == {"chikyosai", "nenkin"}
    granted: dict[tuple[str, str], str] = {}
    for s in allows:
        [role] = as_list(s["Condition"]["ArnLike"]["aws:PrincipalArn"])
        recipient = next(a for a in batch.values() if role in a.principals)
        assert s["Condition"]["StringEquals"]["aws:SourceVpce"] == sorted(recipient.vpc_endpoint_ids)
        granted[(recipient.recipient_id, s["Action"])] = s["Resource"]
    for rid in batch:
        assert granted[(rid, "s3:PutObject")] == f"{arn}/in/{rid}/*"
        assert granted[(rid, "s3:GetObject")] == f"{arn}/out/{rid}/*"
    by_sid = {s.get("Sid"): s for s in policy}
    assert by_sid["DenyUploadsNotSseKms"]["Condition"] == {
        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    assert by_sid["DenyUploadsWithAnotherKey"]["Condition"]["StringNotEqualsIfExists"][
        "s3:x-amz-server-side-encryption-aws-kms-key-id"] == {"Fn::GetAtt": [key, "Arn"]}
    others = by_sid["DenyObjectsToOthers"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert "arn:aws:iam::123456789012:role/jukinet-demo-agency/fsa" not in others
    # The recipients may use the batch key only through S3.
    key_policy = statements(resources[key]["Properties"]["KeyPolicy"])
    [recipients] = [s for s in key_policy if s.get("Sid", "").startswith("BatchRecipientsUseThroughS3")]
    assert recipients["Condition"]["StringEquals"]["kms:ViaService"] == ["s3.ap-northeast-1.amazonaws.com"]
    assert sorted(recipients["Condition"]["ArnLike"]["aws:PrincipalArn"]) == sorted(
        p for a in batch.values() for p in a.principals)


@slow
def test_functions_environment_memory_timeouts_and_triggers(every: Synth) -> None:
    d = every.deployment
    names = Names.of(d)
    resources = _national(every)
    for handler in (API_HANDLER, BATCH_HANDLER):
        _, fn = _function(every, handler)
        env = fn["Environment"]["Variables"]
        assert env["AGREEMENTS_FILE"] == "agreements.json"
        assert env["POWERTOOLS_SERVICE_NAME"] == "jukinet-provision"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Jukinet"
        assert resources[env["TABLE_NAME"]["Ref"]]["Properties"]["TableName"] == "jukinet-national-identity"
        assert resources[env["PROVISION_LOG_TABLE"]["Ref"]]["Properties"]["TableName"] == names.provision_log_table()
        assert resources[env["PROVISION_STATE_TABLE"]["Ref"]]["Properties"]["TableName"] == (
            names.provision_state_table())
        assert resources[env["BATCH_QUEUE_URL"]["Ref"]]["Properties"]["QueueName"] == "jukinet-national-provision-batch"
        assert {"DATA_KEY_ID", "BATCH_BUCKET", "LOG_LEVEL"} <= env.keys()
        endpoints = env["PREFECTURE_API_ENDPOINTS"]
        if every.name == "multi-account-example":
            assert json.loads(endpoints) == {"200000": "vpce-0a1b2c3d4e5f60004"}
        else:
            assert {"Fn::ImportValue": "jukinet-pref-200000-execute-api-endpoint-id"} in endpoints["Fn::Join"][1]
    _, api = _function(every, API_HANDLER)
    _, batch = _function(every, BATCH_HANDLER)
    sealer_id, sealer = _function(every, SEALER_HANDLER)
    assert (api["FunctionName"], api["MemorySize"], api["Timeout"]) == ("jukinet-national-provision-api", 1024, 29)
    assert (batch["FunctionName"], batch["MemorySize"], batch["Timeout"]) == (
        "jukinet-national-provision-batch", 1024, 300)
    assert (sealer["FunctionName"], sealer["MemorySize"], sealer["Timeout"]) == (
        "jukinet-national-provision-sealer", 512, 900)
    assert set(sealer["Environment"]["Variables"]) == {
        "PROVISION_LOG_TABLE", "PROVISION_STATE_TABLE", "SEAL_KEY_ID", "SEAL_ARCHIVE_BUCKET",
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}

    [rule] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"
              and not r["Properties"]["Name"].endswith(("-ledger-watch", "-reconciliation",
                                                               "-monitoring-report"))]
    # (the tier's own watch: test_alarms.py; its reconciliation: test_security_reports.py)
    assert rule["ScheduleExpression"] == "cron(10 * * * ? *)"  # every hour at :10: the hour before is sealed
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [sealer_id, "Arn"]}
    assert not {"Input", "InputPath", "InputTransformer"} & target.keys()

    [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                 and r["Properties"]["BatchSize"] == 1]
    queue = resources[mapping["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
    assert queue["QueueName"] == "jukinet-national-provision-batch"
    assert queue["VisibilityTimeout"] >= 6 * batch["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
    dlq = resources[queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
    assert dlq["QueueName"] == "jukinet-national-provision-batch-dlq"


@slow
def test_agreements_json_is_in_the_provision_functions_asset_only(every: Synth) -> None:
    expected = agreements_document(every.deployment.agencies)
    for f in every.props("AWS::Lambda::Function"):
        asset = every.outdir / f"asset.{f['Code']['S3Key'].removesuffix('.zip')}"
        assert asset.is_dir(), asset
        if f["Handler"] in (API_HANDLER, BATCH_HANDLER, SEALER_HANDLER):
            assert (asset / AGREEMENTS_FILE).read_bytes() == expected
            assert (asset / "jukinet" / "handlers").is_dir()
        else:
            assert not (asset / AGREEMENTS_FILE).exists()


@slow
def test_the_prefecture_tier_has_an_execute_api_endpoint_for_its_own_use_and_exports_it(large: Synth) -> None:
    names = Names.of(large.deployment)
    for p in large.deployment.prefectures:
        stack = names.prefecture_stack(p.code)
        template = large.templates[stack]
        endpoints = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::EC2::VPCEndpoint"
                     and "execute-api" in json.dumps(r["Properties"]["ServiceName"])]
        outputs = {o.get("Export", {}).get("Name") for o in template.get("Outputs", {}).values()}
        if large.deployment.own_use_recipients(p.code):
            [endpoint] = endpoints
            assert endpoint["PrivateDnsEnabled"] is True and endpoint["VpcEndpointType"] == "Interface"
            assert names.execute_api_endpoint_export(prefecture_tier(p.code)) in outputs
        else:  # Hokkaido (synthetic) has no own-use recipient
            assert not endpoints
            assert names.execute_api_endpoint_export(prefecture_tier(p.code)) not in outputs


@slow
def test_alarms_watch_refusals_errors_dead_letters_and_the_seal(nagano: Synth) -> None:
    alarms = {r["Properties"]["AlarmName"]: r["Properties"] for r in _national(nagano).values()
              if r["Type"] == "AWS::CloudWatch::Alarm" and "-provision-" in r["Properties"]["AlarmName"]}
    assert alarms["jukinet-national-provision-unauthorised-attempts"]["MetricName"] == "UnauthorisedAttempts"
    assert alarms["jukinet-national-provision-gateway-refusals"]["MetricName"] == "GatewayRefusals"
    assert alarms["jukinet-national-provision-api-errors"]["MetricName"] == "5XXError"
    assert alarms["jukinet-national-provision-sealer-errors"]["MetricName"] == "Errors"
    # Issue 12 item 5: a heartbeat from the sealer; no datapoint (sealer stopped) is breaching.
    not_sealed = alarms["jukinet-national-provision-log-not-sealed"]
    assert (not_sealed["MetricName"], not_sealed["Statistic"], not_sealed["Period"]) == (
        "ProvisionLogSealed", "Sum", 3600)
    assert not_sealed["Dimensions"] == [{"Name": "service", "Value": "jukinet-provision"},
                                        {"Name": "tier", "Value": "national"}]
    assert (not_sealed["ComparisonOperator"], not_sealed["Threshold"]) == ("LessThanThreshold", 1)
    assert not_sealed["TreatMissingData"] == "breaching"
    # two hours both without a seal: the hour in progress has none until the :10 run
    assert (not_sealed["EvaluationPeriods"], not_sealed["DatapointsToAlarm"]) == (2, 2)
    assert alarms["jukinet-national-provision-sealer-throttled"]["MetricName"] == "Throttles"
    # Issue 19 part 5: the month's counters against the sealed log, reported by the sealer.
    mismatch = alarms["jukinet-national-provision-stats-mismatch"]
    assert (mismatch["MetricName"], mismatch["Statistic"], mismatch["ComparisonOperator"], mismatch["Threshold"]) == (
        "ProvisionStatsMismatch", "Sum", "GreaterThanThreshold", 0)
    assert mismatch["AlarmDescription"].endswith("See docs/provision.md#provision-stats-mismatch.")
    assert "jukinet-national-provision-batch-dlq-not-empty" in alarms
    # The anomaly alarms on the provision metrics belong to detection: docs/operations.md.
    anomalies = ("-outside-agreed-hours", "-sequential-codes", "-not-found-ratio", "-volume-anomaly-")
    assert all(re.search(r"See docs/operations\.md#[a-z-]+\.$" if any(k in n for k in anomalies)
                         else r"See docs/provision\.md#[a-z-]+\.$", a["AlarmDescription"]) for n, a in alarms.items())
    [metric_filter] = [r["Properties"] for r in _national(nagano).values() if r["Type"] == "AWS::Logs::MetricFilter"
                       and r["Properties"]["MetricTransformations"][0]["MetricName"] == "GatewayRefusals"]
    assert '$.status = "403"' in metric_filter["FilterPattern"]
    assert '$.errorResponseType = "ACCESS_DENIED"' in metric_filter["FilterPattern"]
    [transformation] = metric_filter["MetricTransformations"]
    assert (transformation["MetricNamespace"], transformation["MetricName"]) == ("Jukinet", "GatewayRefusals")


@slow
def test_the_national_trail_records_batch_file_access(nagano: Synth) -> None:
    [trail] = [r["Properties"] for r in _national(nagano).values() if r["Type"] == "AWS::CloudTrail::Trail"]
    prefixes = [f["StartsWith"] for s in trail["AdvancedEventSelectors"] for f in s["FieldSelectors"]
                if f["Field"] == "resources.ARN"]
    assert any("arn:aws:s3:::jukinet-provision-batch-123456789012-ap-northeast-1/" in p for p in prefixes)


def test_provision_md_documents_the_infrastructure_names() -> None:
    text = (REPO / "docs" / "provision.md").read_text(encoding="utf-8")
    names = Names("jukinet")
    env = Environment("123456789012", "ap-northeast-1")
    for name in (names.provision_log_table(), names.provision_state_table(), names.provision_batch_queue(),
                 names.provision_function("api"), names.provision_function("sealer"), names.provision_api(),
                 names.provision_batch_bucket(env).replace("123456789012-ap-northeast-1", "<account>-<region>"),
                 "PREFECTURE_API_ENDPOINTS", "AGREEMENTS_FILE", "ExecuteApiEndpointId"):
        assert name in text, name


# --- issue 12: the provision API's threats (docs/security.md "Threats on the provision API") -------


@slow
def test_isolated_recipient_calls_and_suspected_scans_are_alarmed(nagano: Synth) -> None:
    alarms = {r["Properties"]["AlarmName"]: r["Properties"] for r in _national(nagano).values()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    isolated = alarms["jukinet-national-provision-isolated-recipient-calls"]
    scan = alarms["jukinet-national-provision-scan-suspected"]
    for alarm, metric in ((isolated, "IsolatedRecipientCalls"), (scan, "ScanSuspected")):
        assert alarm["MetricName"] == metric and alarm["Namespace"] == "Jukinet"
        assert {d["Name"] for d in alarm["Dimensions"]} == {"service", "tier"}
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"]


@slow
def test_the_batch_worker_may_read_the_pinned_version_of_an_input_and_others_may_not(nagano: Synth) -> None:
    for handler in (API_HANDLER, BATCH_HANDLER):
        [read] = [s for s in _role_policy(nagano, handler) if s.get("Sid") == "ReadBatchObjects"]
        assert set(as_list(read["Action"])) == {"s3:GetObject", "s3:GetObjectVersion"}
    [deny] = [s for r in _national(nagano).values() if r["Type"] == "AWS::S3::BucketPolicy"
              for s in statements(r["Properties"]["PolicyDocument"]) if s.get("Sid") == "DenyObjectsToOthers"]
    assert "s3:GetObjectVersion" in as_list(deny["Action"])


@slow
def test_only_the_national_operator_sets_an_isolation_mark_and_only_isolation_marks(nagano: Synth) -> None:
    from embedded_aws.iam_policy import ALLOW, IMPLICIT_DENY, evaluate

    from .test_responsibility import people_roles, policies_of, tier_stacks

    state = "arn:aws:dynamodb:ap-northeast-1:123456789012:table/jukinet-national-provision-state"
    for tier, stack in tier_stacks(nagano).items():
        template = nagano.templates[stack]
        docs = policies_of(template, people_roles(template, tier)[f"jukinet-{tier}-operator"])
        mark = evaluate(docs, action="dynamodb:PutItem", resource=state,
                        context={"dynamodb:LeadingKeys": ["ISOLATED#nenkin"]})
        assert mark == (ALLOW if tier == "national" else IMPLICIT_DENY), tier
        # Not the limit counters, jobs or scan windows beside the marks.
        for key in ("STAT#2026-11", "JOB#J-1", "SCAN#nenkin"):
            assert evaluate(docs, action="dynamodb:PutItem", resource=state,
                            context={"dynamodb:LeadingKeys": [key]}) == IMPLICIT_DENY, (tier, key)


@slow
def test_a_writer_cannot_rewrite_or_delete_an_entry_through_a_transaction(nagano: Synth) -> None:
    """Decision 0023: look-ups and batch chunks append with TransactWriteItems. IAM has no
    action of its own for a transaction: each of its Put, Update and Delete is authorised as
    PutItem, UpdateItem and DeleteItem (``dynamodb:EnclosingOperation`` names the
    transaction). So the attack — an insider with the api or batch function's rights sending a
    TransactWriteItems that deletes or updates a log entry, or sets its expiry — meets the same
    Denies as the plain calls, in the role's policy and in the table's resource policy."""
    from embedded_aws.iam_policy import ALLOW, DENY, evaluate

    resources = _national(nagano)
    log = _table_id(nagano, "-provision-log")
    resource_policy = resources[log]["Properties"]["ResourcePolicy"]["PolicyDocument"]
    [table_arn] = {json.dumps(r, sort_keys=True) for s in statements(resource_policy) for r in as_list(s["Resource"])}
    for handler in (API_HANDLER, BATCH_HANDLER):
        _, fn = _function(nagano, handler)
        role_doc = {"Statement": _role_policy(nagano, handler)}
        on_log = [s for s in role_doc["Statement"] if log in _refs(s.get("Resource"))]
        [log_arn] = [r for s in on_log for r in as_list(s["Resource"]) if log in _refs(r) and "Fn::Join" not in r][:1]
        principal = f"arn:aws:iam::123456789012:role/jukinet/national/{fn['FunctionName']}"
        entry = {"dynamodb:EnclosingOperation": "TransactWriteItems", "dynamodb:LeadingKeys": ["P#12345678901"]}
        for action, attributes in (("dynamodb:DeleteItem", ["pk", "sk"]),
                                   ("dynamodb:UpdateItem", ["pk", "sk", "content", "hash"]),
                                   ("dynamodb:UpdateItem", ["pk", "sk", "expires_at"]),
                                   ("dynamodb:PutItem", ["pk", "sk", "content", "hash", "expires_at"])):
            context = {**entry, "dynamodb:Attributes": attributes}
            assert evaluate(role_doc, action=action, resource=log_arn, context=context) == DENY, (handler, action)
            assert evaluate(resource_policy, action=action, resource=json.loads(table_arn), principal=principal,
                            context=context) == DENY, (handler, action, attributes)
        # Appending stays possible (and is all a transaction may do to the log): a Put whose
        # condition the runtime sets to attribute_not_exists; an overwrite breaks the chain
        # and the hourly seal, which verify names (decision 0014).
        assert evaluate(role_doc, action="dynamodb:PutItem", resource=log_arn,
                        context={**entry, "dynamodb:Attributes": ["pk", "sk", "n", "prev", "hash", "content",
                                                                  "day_shard", "entry_ref"]}) == ALLOW
