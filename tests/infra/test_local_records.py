"""The local-record table of each municipality tier (decision 0044), asserted by property: its own
customer-managed key, point-in-time recovery, the household index, and each CS's right to append
its own municipality's records only — written as the insider's attack it stops."""

from __future__ import annotations

from typing import Any

import pytest

from infra.naming import Names, local_record_partition_prefix
from embedded_aws.iam_policy import ALLOW, DENY, IMPLICIT_DENY, evaluate

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow

BASE = "jukinet-muni-200000-base"
TABLE = "jukinet-muni-200000-local-records"
TABLE_ARN = f"arn:aws:dynamodb:ap-northeast-1:123456789012:table/{TABLE}"
CS_HANDLER = "jukinet.handlers.municipality_cs.handler"


def _resources(synth: Synth, stack: str, rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in synth.templates[stack]["Resources"].items() if r["Type"] == rtype}


def _table(synth: Synth, stack: str = BASE) -> dict[str, Any]:
    [table] = [r["Properties"] for r in _resources(synth, stack, "AWS::DynamoDB::Table").values()
               if r["Properties"]["TableName"].endswith("-local-records")]
    return table


def _cs_policies(synth: Synth) -> dict[str, dict[str, Any]]:
    """Each CS's role policy (``Permissions of jukinet-cs-<code>``) by municipality code."""
    found: dict[str, dict[str, Any]] = {}
    for _, _, res in synth.resources("AWS::IAM::ManagedPolicy"):
        description = res["Properties"].get("Description", "")
        if description.startswith("Permissions of jukinet-cs-"):
            found[description.rsplit("-", 1)[1]] = res["Properties"]["PolicyDocument"]
    return found


def test_each_municipality_tier_has_one_local_record_table_under_its_own_customer_key(every: Synth) -> None:
    for p in every.deployment.prefectures:
        stack = every.built.municipality_bases[p.code].stack_name
        table = _table(every, stack)
        assert table["TableName"] == Names.of(every.deployment).local_record_table(p.code)
        sse = table["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
        key_id = sse["KMSMasterKeyId"]["Fn::GetAtt"][0]
        key = every.templates[stack]["Resources"][key_id]["Properties"]
        assert key["EnableKeyRotation"] is True
        # its own key: no other table of the tier, no bucket or queue is encrypted with it
        others = [t for t in every.templates[stack]["Resources"].values() if t["Type"] != "AWS::KMS::Alias"
                  and key_id in str(t.get("Properties", {})) and t.get("Properties") is not table
                  and t["Type"] not in ("AWS::KMS::Key",)]
        assert not others, [o["Type"] for o in others]
        aliases = {a["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]: a["Properties"]["AliasName"]
                   for a in _resources(every, stack, "AWS::KMS::Alias").values()}
        assert aliases[key_id] == f"alias/jukinet/muni-{p.code}/local-records"
        # the key works only through DynamoDB: nobody decrypts with it directly
        for s in statements(key["KeyPolicy"]):
            if "kms:Decrypt" in as_list(s["Action"]):
                assert s["Condition"]["StringEquals"]["kms:ViaService"] == "dynamodb.ap-northeast-1.amazonaws.com"


def test_the_table_is_recoverable_protected_and_indexed_by_household(nagano: Synth) -> None:
    table = _table(nagano)
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionProtectionEnabled"] is True
    assert "TimeToLiveSpecification" not in table  # nothing of a resident record expires by itself
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_household"
    assert index["KeySchema"] == [{"AttributeName": "household", "KeyType": "HASH"},
                                  {"AttributeName": "pk", "KeyType": "RANGE"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_each_cs_may_put_only_its_own_municipalitys_items_and_never_rewrite_one(nagano: Synth) -> None:
    policies = _cs_policies(nagano)
    assert len(policies) == len(nagano.deployment.prefectures[0].municipality_tier.municipalities)
    for code, doc in policies.items():
        by_sid = {s["Sid"]: s for s in doc["Statement"] if "Sid" in s}
        append = by_sid["AppendOwnLocalRecordsOnly"]
        assert as_list(append["Action"]) == ["dynamodb:PutItem"]
        assert as_list(append["Resource"]) == [TABLE_ARN]
        assert append["Condition"] == {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"MUNI#{code}#*"]},
            "Null": {"dynamodb:LeadingKeys": "false"}}
        deny = by_sid["NeverRewriteLocalRecords"]
        assert deny["Effect"] == "Deny"
        assert {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"} <= set(as_list(deny["Action"]))


def test_every_cs_gets_the_table_name(nagano: Synth) -> None:
    found = 0
    for stack in nagano.built.municipality_stacks["200000"]:
        for r in _resources(nagano, stack.stack_name, "AWS::Lambda::Function").values():
            if r["Properties"]["Handler"] == CS_HANDLER:
                assert r["Properties"]["Environment"]["Variables"]["LOCAL_RECORD_TABLE_NAME"] == TABLE
                found += 1
    assert found == len(nagano.deployment.prefectures[0].municipality_tier.municipalities)


def test_the_tiers_dynamodb_endpoint_admits_only_appends_to_the_table(nagano: Synth) -> None:
    endpoints = [r["Properties"] for r in _resources(nagano, BASE, "AWS::EC2::VPCEndpoint").values()
                 if "dynamodb" in str(r["Properties"]["ServiceName"])]
    [endpoint] = endpoints
    [st] = [s for s in statements(endpoint["PolicyDocument"]) if s.get("Sid") == "LocalRecordAppends"]
    assert as_list(st["Action"]) == ["dynamodb:PutItem"] and as_list(st["Resource"]) == [TABLE_ARN]


def test_an_insider_with_one_cs_s_rights_cannot_write_another_municipality_s_records(nagano: Synth) -> None:
    """The attack: someone with the CS role of 長野市 (a stolen session, a changed function) writes
    or rewrites a local record of 松本市 — or rewrites one of 長野市's own — directly, in a
    transaction, by batch or without naming a key."""
    policies = _cs_policies(nagano)
    nagano_doc, matsumoto = policies["202011"], "202029"
    own = {"dynamodb:LeadingKeys": [f"{local_record_partition_prefix('202011')}R#24738519066"]}
    other = {"dynamodb:LeadingKeys": [f"{local_record_partition_prefix(matsumoto)}R#24738519066"]}
    assert evaluate(nagano_doc, action="dynamodb:PutItem", resource=TABLE_ARN, context=own) == ALLOW
    in_a_transaction = {"dynamodb:EnclosingOperation": "TransactWriteItems"}
    assert evaluate(nagano_doc, action="dynamodb:PutItem", resource=TABLE_ARN,
                    context={**own, **in_a_transaction}) == ALLOW
    for context in (other, {**other, **in_a_transaction},
                    {"dynamodb:LeadingKeys": [own["dynamodb:LeadingKeys"][0], other["dynamodb:LeadingKeys"][0]]},
                    {"dynamodb:LeadingKeys": ["202029#R#24738519066"]},  # a key of another shape
                    {"dynamodb:LeadingKeys": ["MUNI#2020111#R#1"]},  # a code that merely begins with 202011
                    {}):  # no key at all: the Null guard
        assert evaluate(nagano_doc, action="dynamodb:PutItem", resource=TABLE_ARN, context=context) == IMPLICIT_DENY, \
            context
    for action in ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"):
        for context in (own, other):
            assert evaluate(nagano_doc, action=action, resource=TABLE_ARN, context=context) == DENY, (action, context)
    # 松本市's own CS may write 松本市's records: the rule is per municipality, not a blanket refusal
    assert evaluate(policies[matsumoto], action="dynamodb:PutItem", resource=TABLE_ARN, context=other) == ALLOW
    # and no CS may read the table (the readers of item 3 get their own grants)
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"):
        assert evaluate(nagano_doc, action=action, resource=TABLE_ARN, context=own) == IMPLICIT_DENY


def test_no_person_of_any_tier_may_read_or_write_the_local_records(nagano: Synth) -> None:
    """The people roles (operators, security officers, contractors, break-glass) are granted
    nothing on the table: a resident's household and 本籍 are read only by the functions that
    need them (item 3's endpoint, when it comes)."""
    from .test_responsibility import people_roles, policies_of, tier_stacks

    checked = 0
    for tier, stack in tier_stacks(nagano).items():
        template = nagano.templates[stack]
        for name, role in people_roles(template, tier).items():
            docs = policies_of(template, role)
            for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:PutItem",
                           "dynamodb:ExportTableToPointInTime", "dynamodb:PartiQLSelect"):
                for resource in (TABLE_ARN, f"{TABLE_ARN}/index/by_household"):
                    assert evaluate(docs, action=action, resource=resource,
                                    context={"dynamodb:LeadingKeys": ["MUNI#202011#R#24738519066"],
                                             "aws:SourceIdentity": "someone", "aws:MultiFactorAuthPresent": True},
                                    ) != ALLOW, (name, action, resource)
            checked += 1
    assert checked >= 6
