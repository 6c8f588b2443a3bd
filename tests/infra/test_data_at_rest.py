"""DynamoDB tables and KMS keys."""

from __future__ import annotations

import pytest

from infra.naming import Names

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow

CRYPTO_ACTIONS = {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:Sign", "kms:ReEncrypt*",
                  "kms:GenerateDataKey*", "kms:ReEncryptFrom", "kms:Encrypt*", "kms:Decrypt*"}


def test_every_table_uses_its_cmk_pitr_deletion_protection_and_on_demand_billing(every: Synth) -> None:
    tables = every.props("AWS::DynamoDB::Table")
    provision = 2 if every.deployment.agencies else 0  # the provision log and state tables
    # per prefecture: identity, CS state, card and local-record tables
    assert len(tables) == 4 * len(every.deployment.prefectures) + 1 + provision
    for t in tables:
        assert t["SSESpecification"]["SSEEnabled"] is True
        assert t["SSESpecification"]["SSEType"] == "KMS"
        assert "KMSMasterKeyId" in t["SSESpecification"]
        assert t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert t["DeletionProtectionEnabled"] is True
        assert t["BillingMode"] == "PAY_PER_REQUEST"
    assert not every.resources("AWS::DynamoDB::GlobalTable")  # TableV2 cannot be deployed on the embedded AWS


def test_identity_tables_have_only_the_blind_index_gsi(nagano: Synth) -> None:
    identity = [t for t in nagano.props("AWS::DynamoDB::Table") if t["TableName"].endswith("-identity")]
    assert {t["TableName"] for t in identity} == {"jukinet-pref-200000-identity", "jukinet-national-identity"}
    for t in identity:
        assert t["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
        gsis = {g["IndexName"]: g for g in t["GlobalSecondaryIndexes"]}
        assert set(gsis) == {"by_blind_index"}  # counts live in the ledger items, not an index
        assert gsis["by_blind_index"]["KeySchema"] == [
            {"AttributeName": "bidx", "KeyType": "HASH"}, {"AttributeName": "pk", "KeyType": "RANGE"}]
    state = [t for t in nagano.props("AWS::DynamoDB::Table") if t["TableName"].endswith("-cs-state")]
    assert len(state) == 1 and "GlobalSecondaryIndexes" not in state[0]


def test_every_symmetric_key_rotates(every: Synth) -> None:
    symmetric = [k for k in every.props("AWS::KMS::Key")
                 if k.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"]
    assert symmetric
    assert all(k["EnableKeyRotation"] is True for k in symmetric)


def test_each_municipality_and_prefecture_has_an_ecc_signing_key_under_its_alias(every: Synth) -> None:
    names = Names.of(every.deployment)
    signing = [k for k in every.props("AWS::KMS::Key") if k.get("KeySpec") == "ECC_NIST_P256"]
    assert all(k["KeyUsage"] == "SIGN_VERIFY" for k in signing)
    # The provision log's seal key is the one signing key that signs no notices (tests/infra/test_provision.py).
    signing = [k for k in signing if not k["Description"].startswith("national:")]
    # Each municipality tier's card-event key signs card events only (tests/infra/test_counter.py).
    card_events = [k for k in signing if "resident card's lifecycle events" in k["Description"]]
    assert len(card_events) == len(every.deployment.prefectures)
    signing = [k for k in signing if k not in card_events]
    codes = [p.code for p in every.deployment.prefectures] + [
        m.code for p in every.deployment.prefectures for m in p.municipality_tier.municipalities]
    assert len(signing) == len(codes)
    aliases = {a["AliasName"] for a in every.props("AWS::KMS::Alias")}
    assert {names.signing_alias(c) for c in codes} <= aliases


def test_key_policies_separate_administration_from_use(every: Synth) -> None:
    for key in every.props("AWS::KMS::Key"):
        policy = statements(key["KeyPolicy"])
        for s in policy:
            actions = set(as_list(s["Action"]))
            assert "kms:*" not in actions
            if s.get("Sid") == "Administration":
                assert not actions & CRYPTO_ACTIONS, actions & CRYPTO_ACTIONS
                assert "kms:CreateGrant" not in actions
            if s.get("Sid") == "GrantsForAwsServicesOnly":
                assert s["Condition"]["Bool"]["kms:GrantIsForAWSResource"] == "true"
        assert any(s.get("Sid") == "Administration" for s in policy)


def test_only_the_cs_role_and_its_tiers_channel_function_may_sign_with_a_municipality_key(nagano: Synth) -> None:
    """Decision 0042: the channel function signs channel messages as the tier's municipalities."""
    for key in nagano.props("AWS::KMS::Key"):
        if key.get("KeySpec") != "ECC_NIST_P256" or key["Description"].startswith(("pref-200000", "national:")):
            continue
        if "resident card's lifecycle events" in key["Description"]:  # tests/infra/test_counter.py
            continue
        code = key["Description"].split()[0]
        sign = [s for s in statements(key["KeyPolicy"]) if "kms:Sign" in as_list(s["Action"])]
        assert [s["Condition"]["ArnLike"]["aws:PrincipalArn"] for s in sign] == [
            [f"arn:aws:iam::123456789012:role/jukinet/muni-200000/jukinet-cs-{code}"],
            ["arn:aws:iam::123456789012:role/jukinet/muni-200000/jukinet-muni-200000-channel"]]
        for s in sign:
            assert s["Condition"]["StringEquals"]["kms:SigningAlgorithm"] == "ECDSA_SHA_256"
        verify = [s for s in statements(key["KeyPolicy"]) if "kms:GetPublicKey" in as_list(s["Action"])
                  and s.get("Sid") != "Administration"]
        assert verify[0]["Condition"]["ArnLike"]["aws:PrincipalArn"] == [
            "arn:aws:iam::123456789012:role/jukinet/pref-200000/*"]
