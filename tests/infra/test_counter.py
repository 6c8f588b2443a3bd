"""The counter API's infrastructure in each municipality tier (docs/card.md), asserted by
property: private and SigV4 only, Deny outside the tier's own execute-api endpoint, one
counter-staff role per municipality, the card table and keys, the alarms, no internet route."""

from __future__ import annotations

from typing import Any

import pytest

from infra.naming import Names

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow

BASE = "jukinet-muni-200000-base"
HANDLER = "jukinet.handlers.card_api.handler"


def _resources(synth: Synth, stack: str, rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in synth.templates[stack]["Resources"].items() if r["Type"] == rtype}


def _counter_api(synth: Synth, stack: str = BASE) -> tuple[str, dict[str, Any]]:
    apis = {lid: r for lid, r in _resources(synth, stack, "AWS::ApiGateway::RestApi").items()
            if r["Properties"]["Name"].endswith("-counter")}
    assert len(apis) == 1
    return next(iter(apis.items()))


def test_each_municipality_tier_has_one_private_counter_api_and_every_method_is_sigv4(every: Synth) -> None:
    for p in every.deployment.prefectures:
        stack = every.built.municipality_bases[p.code].stack_name
        lid, api = _counter_api(every, stack)
        assert api["Properties"]["EndpointConfiguration"]["Types"] == ["PRIVATE"]
        methods = [r["Properties"] for r in _resources(every, stack, "AWS::ApiGateway::Method").values()
                   if r["Properties"]["RestApiId"] == {"Ref": lid}]
        assert len(methods) == 21  # 9 card routes, 2 wide-area copy routes (0046), 6 special-move routes (0049), 4 of a card of another tier (0050)
        assert {m["AuthorizationType"] for m in methods} == {"AWS_IAM"}


def test_the_resource_policy_denies_everything_outside_the_tiers_own_endpoint(nagano: Synth) -> None:
    lid, api = _counter_api(nagano)
    endpoints = {e_lid for e_lid, e in _resources(nagano, BASE, "AWS::EC2::VPCEndpoint").items()
                 if "execute-api" in str(e["Properties"]["ServiceName"])}
    assert len(endpoints) == 1
    endpoint = endpoints.pop()
    denies = [s for s in statements(api["Properties"]["Policy"]) if s["Effect"] == "Deny"
              and s["Resource"] == "execute-api:/*"]
    assert len(denies) == 1
    assert denies[0]["Principal"] == {"AWS": "*"}
    assert denies[0]["Condition"] == {"StringNotEquals": {"aws:SourceVpce": {"Ref": endpoint}}}
    assert api["Properties"]["EndpointConfiguration"]["VpcEndpointIds"] == [{"Ref": endpoint}]


def test_the_resource_policy_admits_the_counter_roles_and_the_operator_only_for_suspensions(nagano: Synth) -> None:
    _, api = _counter_api(nagano)
    names = Names.of(nagano.deployment)
    p = nagano.deployment.prefectures[0]
    env = p.municipality_tier.env
    counters = sorted(names.counter_role_arn(env, p.code, m.code) for m in p.municipality_tier.municipalities)
    allows = {s["Sid"]: s for s in statements(api["Properties"]["Policy"]) if s["Effect"] == "Allow"}
    assert sorted(as_list(allows["AllowCounterStaff"]["Principal"]["AWS"])) == counters
    operator = allows["AllowOperatorSuspensions"]
    assert operator["Principal"]["AWS"] == names.people_role_arn(env, f"muni-{p.code}", "operator")
    assert operator["Resource"] == "execute-api:/api/POST/v1/cards/*/suspension"
    deny_others = next(s for s in statements(api["Properties"]["Policy"]) if s["Sid"] == "DenyCardRoutesToOthers")
    assert "execute-api:/api/POST/v1/cards/*/suspension" not in as_list(deny_others["Resource"])
    assert sorted(deny_others["Condition"]["ArnNotLike"]["aws:PrincipalArn"]) == counters


def test_one_counter_role_per_municipality_invoking_only_this_api(every: Synth) -> None:
    names = Names.of(every.deployment)
    for p in every.deployment.prefectures:
        stack = every.built.municipality_bases[p.code].stack_name
        roles = [r["Properties"] for r in _resources(every, stack, "AWS::IAM::Role").values()
                 if r["Properties"].get("Path") == names.counter_roles_path(p.code)]
        assert sorted(r["RoleName"] for r in roles) == sorted(
            names.counter_role(m.code) for m in p.municipality_tier.municipalities)
        for role in roles:
            assert "Policies" not in role
            assert role["MaxSessionDuration"] == 12 * 3600
        policies = [r["Properties"] for r in _resources(every, stack, "AWS::IAM::ManagedPolicy").values()
                    if r["Properties"].get("Path") == names.counter_roles_path(p.code)]
        assert len(policies) == 1
        actions = {a for s in statements(policies[0]["PolicyDocument"]) for a in as_list(s["Action"])}
        assert actions == {"execute-api:Invoke"}


def test_the_counter_endpoint_admits_https_from_the_municipal_networks_only(nagano: Synth) -> None:
    groups = [r["Properties"] for r in _resources(nagano, BASE, "AWS::EC2::SecurityGroup").values()
              if "counter API" in r["Properties"]["GroupDescription"]]
    assert len(groups) == 1
    muni = nagano.deployment.prefectures[0].municipality_tier
    ingress = groups[0]["SecurityGroupIngress"]
    assert {(i["CidrIp"], i["FromPort"], i["ToPort"], i["IpProtocol"]) for i in ingress} == {
        (c, 443, 443, "tcp") for c in (*muni.upload_cidrs, muni.network.cidr)}


def test_the_card_table_is_under_its_own_customer_key_recoverable_and_expiring(nagano: Synth) -> None:
    tables = [r["Properties"] for r in _resources(nagano, BASE, "AWS::DynamoDB::Table").values()
              if r["Properties"]["TableName"].endswith("-cards")]
    assert len(tables) == 1
    table = tables[0]
    assert table["SSESpecification"]["SSEEnabled"] is True and table["SSESpecification"]["SSEType"] == "KMS"
    key_ref = table["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]
    key = nagano.templates[BASE]["Resources"][key_ref]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionProtectionEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_card_events_are_signed_by_a_key_only_the_counter_and_channel_functions_may_sign_with(nagano: Synth) -> None:
    keys = [r["Properties"] for r in _resources(nagano, BASE, "AWS::KMS::Key").values()
            if r["Properties"].get("KeySpec") == "ECC_NIST_P256"]
    assert len(keys) == 1
    signers = [s for s in statements(keys[0]["KeyPolicy"]) if "kms:Sign" in as_list(s["Action"])]
    # the counter function; the tier's channel function for pin_locked and moved across tiers (decision 0050)
    assert len(signers) == 2
    signer_arns = sorted(a for s in signers for a in as_list(s["Condition"]["ArnLike"]["aws:PrincipalArn"]))
    assert [a.rsplit(":role/", 1)[1] for a in signer_arns] == [
        "jukinet/muni-200000/jukinet-muni-200000-channel", "jukinet/muni-200000/jukinet-muni-200000-counter"]
    for signer in signers:
        assert signer["Condition"]["StringEquals"] == {"kms:SigningAlgorithm": "ECDSA_SHA_256"}


def test_the_counter_function_runs_in_the_isolated_vpc_with_only_its_table_and_key(nagano: Synth) -> None:
    functions = {lid: r["Properties"] for lid, r in _resources(nagano, BASE, "AWS::Lambda::Function").items()
                 if r["Properties"]["Handler"] == HANDLER}
    assert len(functions) == 1
    fn = next(iter(functions.values()))
    assert fn["VpcConfig"]["SubnetIds"]
    for kind in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway"):
        assert not _resources(nagano, BASE, kind)
    routes = [r["Properties"] for r in _resources(nagano, BASE, "AWS::EC2::Route").values()]
    assert not [r for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    policies = [r["Properties"] for r in _resources(nagano, BASE, "AWS::IAM::ManagedPolicy").values()
                if any(s.get("Sid") == "SignCardEvents" for s in statements(r["Properties"]["PolicyDocument"]))
                and r["Properties"].get("Description") == "Permissions of jukinet-muni-200000-counter"]
    assert len(policies) == 1
    by_sid = {s["Sid"]: s for s in statements(policies[0]["PolicyDocument"]) if "Sid" in s}
    table = as_list(by_sid["CardTable"]["Resource"])
    assert len(table) == 1 and nagano.templates[BASE]["Resources"][table[0]["Fn::GetAtt"][0]]["Properties"][
        "TableName"].endswith("-cards")
    assert as_list(by_sid["SignCardEvents"]["Action"]) == ["kms:Sign"]


def test_each_cs_writes_only_residents_register_items_in_the_card_table(nagano: Synth) -> None:
    found = 0
    for stack in nagano.built.municipality_stacks["200000"]:
        for r in _resources(nagano, stack.stack_name, "AWS::IAM::ManagedPolicy").values():
            for s in statements(r["Properties"]["PolicyDocument"]):
                if s.get("Sid") == "RecordResidentsForCards":
                    found += 1
                    assert sorted(as_list(s["Action"])) == ["dynamodb:BatchGetItem", "dynamodb:PutItem"]
                    assert s["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RESIDENT#*"]}}
    assert found == len(nagano.deployment.prefectures[0].municipality_tier.municipalities)


def test_refusal_bursts_ended_cards_and_unauthorised_attempts_are_alarmed(nagano: Synth) -> None:
    alarms = {r["Properties"]["AlarmName"]: r["Properties"]
              for r in _resources(nagano, BASE, "AWS::CloudWatch::Alarm").values()}
    burst = alarms["jukinet-muni-200000-card-authentication-refusals"]
    assert (burst["MetricName"], burst["Threshold"], burst["Period"]) == ("CardAuthenticationRefusals", 10, 300)
    for name, metric in (("ended-card-presented", "EndedCardPresented"),
                         ("card-unauthorised-attempts", "CardUnauthorisedAttempts")):
        alarm = alarms[f"jukinet-muni-200000-{name}"]
        assert (alarm["MetricName"], alarm["Threshold"]) == (metric, 0)
        assert alarm["AlarmActions"]
    assert "jukinet-muni-200000-counter-api-errors" in alarms


def test_the_tier_dashboard_shows_the_counter_api(nagano: Synth) -> None:
    dashboards = [r["Properties"] for r in _resources(nagano, BASE, "AWS::CloudWatch::Dashboard").values()]
    body = str(dashboards[0]["DashboardBody"])
    assert "Counter API: resident cards" in body and "CardAuthenticationRefusals" in body
