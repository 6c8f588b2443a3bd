"""Cards across tiers on the synthesized templates (decision 0050): the channel function signs
its own tier's card events (pin_locked, moved) and nothing else of the kind; it reaches only the
card-table partitions it needs, never deletes; the counter function checks the card events of a
card carried over from another tier with that tier's public key only. Attacks: one tier's channel
function signing another tier's card events, a CS function or the counter of another tier signing
card events, the channel function deleting records."""

from __future__ import annotations

import pytest

from infra.components.counter import ROUTES
from infra.naming import Names
from jukinet.settings import CardSettings, ChannelSettings, load_settings
from embedded_aws.iam_policy import ALLOW, IMPLICIT_DENY, evaluate

from .conftest import Synth, as_list, statements
from .test_channel import (
    ACCOUNT,
    CHANNEL_01,
    CHANNEL_20,
    COUNTER_20,
    CS_202011,
    _base,
    _function,
    _key_by_alias,
    _key_verdict,
    _literal_env,
    _role_policy,
)

pytestmark = pytest.mark.slow

KEY = f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any"
SIGN = {"kms:SigningAlgorithm": "ECDSA_SHA_256"}


def _signs(policy: dict, who: str) -> str:
    return evaluate(policy, action="kms:Sign", resource="*", principal=who, context={"aws:PrincipalArn": who, **SIGN})


def test_the_remote_authentication_routes_are_deployed() -> None:
    assert {("POST", "/v1/remote-authentications"), ("GET", "/v1/remote-authentications/{auth_id}"),
            ("POST", "/v1/remote-authentications/{auth_id}/answer"),
            ("POST", "/v1/remote-authentications/{auth_id}/pin-failure")} <= set(ROUTES)


def test_the_channel_function_signs_its_own_tiers_card_events_only(large: Synth) -> None:
    names = Names.of(large.deployment)
    for code, own, other in (("200000", CHANNEL_20, CHANNEL_01), ("010006", CHANNEL_01, CHANNEL_20)):
        base = _base(large, code)
        event_key, policy = _key_by_alias(large, base, f"alias/jukinet/muni-{code}/card-events")
        by_sid = {s["Sid"]: s for s in statements(policy)}
        signs = by_sid["ChannelFunctionSignsCardEvents"]
        assert as_list(signs["Action"]) == ["kms:Sign"]
        assert signs["Condition"]["ArnLike"]["aws:PrincipalArn"] == [own]
        assert signs["Condition"]["StringEquals"] == SIGN
        # another tier's channel function, a CS function: not signers of this tier's card events
        for principal in (other, CS_202011):
            assert _signs(policy, principal) == IMPLICIT_DENY, principal
        assert _signs(policy, own) == ALLOW
        doc = _role_policy(large, base, names.channel_function(code))
        [st] = [s for s in statements(doc) if s.get("Sid") == "SignCardEvents"]
        assert st["Resource"] == {"Fn::GetAtt": [event_key, "Arn"]} and st["Condition"]["StringEquals"] == SIGN
        env = _function(large, base, names.channel_function(code))["Environment"]["Variables"]
        assert env["CARD_EVENT_KEY_ID"] == {"Fn::GetAtt": [event_key, "Arn"]}
        assert load_settings(ChannelSettings, _literal_env(env)).CARD_EVENT_KEY_ID == "ref"


def test_the_channel_function_reaches_the_cross_tier_partitions_and_never_deletes(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    doc = _role_policy(nagano, _base(nagano, "200000"), names.channel_function("200000"))
    [records] = [s for s in statements(doc) if s.get("Sid") == "ChannelRecords"]
    table = records["Resource"]
    allowed = {"REMOTE-CHALLENGE#0f3c", "CALL#202011#2003-01", "STAT#202011", "CARDREQ#202011#2003-01",
               "SPECIAL-OUT#202011"}
    for key in allowed:
        got = evaluate(doc, action="dynamodb:PutItem", resource=table, context={"dynamodb:LeadingKeys": [key]})
        assert got == ALLOW, key
    # another prefecture's statistics, calls, requests and move-outs; the KEY# claims; any delete;
    # the authentications at the tier's own counters (a special move's proof, decision 0049); the
    # allow-list partition the special move-out record replaced (CARRY-OVER#: gone)
    for key in ("STAT#131016", "CALL#131016#2003-01", "CARDREQ#131016#2003-01", "KEY#abc", "SPECIAL-OUT#131016",
                "CARRY-OVER#202011", "CHALLENGE#0f3c"):
        got = evaluate(doc, action="dynamodb:PutItem", resource=table, context={"dynamodb:LeadingKeys": [key]})
        assert got == IMPLICIT_DENY, key
    for key in allowed | {"CHANNEL#202011#2003-01"}:
        got = evaluate(doc, action="dynamodb:DeleteItem", resource=table, context={"dynamodb:LeadingKeys": [key]})
        assert got == IMPLICIT_DENY, key


def test_the_counter_checks_carried_card_events_with_the_tiers_public_keys_only(large: Synth) -> None:
    names = Names.of(large.deployment)
    base = _base(large, "200000")
    doc = _role_policy(large, base, names.card_api("200000"))
    [verify] = [s for s in statements(doc) if s.get("Sid") == "VerifyCarriedCardEvents"]
    assert as_list(verify["Action"]) == ["kms:GetPublicKey"]
    aliases = verify["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"]
    assert aliases == ["alias/jukinet/muni-010006/card-events", "alias/jukinet/muni-200000/card-events"]
    # the public key only: no signing with another tier's card-event key, nor a notice key's use
    for action, alias in (("kms:Sign", "alias/jukinet/muni-010006/card-events"),
                          ("kms:GetPublicKey", "alias/jukinet/signing/202011")):
        got = evaluate(doc, action=action, resource=KEY, context={"kms:ResourceAliases": [alias], **SIGN})
        assert got == IMPLICIT_DENY, (action, alias)
    # each card-event key lets every tier's counter function read its public key, and only that
    _, hokkaido_events = _key_by_alias(large, _base(large, "010006"), "alias/jukinet/muni-010006/card-events")
    assert _key_verdict(hokkaido_events, "kms:GetPublicKey", COUNTER_20) == ALLOW
    assert _signs(hokkaido_events, COUNTER_20) == IMPLICIT_DENY
    env = _function(large, base, names.card_api("200000"))["Environment"]["Variables"]
    settings = load_settings(CardSettings, _literal_env(env))
    assert settings.CARD_EVENT_KEY_ALIAS_TEMPLATE.format(prefecture="010006") == \
        "alias/jukinet/muni-010006/card-events"


def test_the_tiers_kms_endpoint_admits_the_card_event_key_uses_and_no_more(nagano: Synth) -> None:
    base = _base(nagano, "200000")
    endpoints = [r["Properties"] for r in nagano.templates[base]["Resources"].values()
                 if r["Type"] == "AWS::EC2::VPCEndpoint" and ".kms" in str(r["Properties"]["ServiceName"])]
    [policy] = [e["PolicyDocument"] for e in endpoints]
    events = "alias/jukinet/muni-200000/card-events"

    def through(who: str, action: str, alias: str) -> str:
        return evaluate(policy, action=action, resource=KEY, principal=who,
                        context={"aws:PrincipalArn": who, "kms:ResourceAliases": [alias]})

    assert through(CHANNEL_20, "kms:Sign", events) == ALLOW  # pin_locked, moved across tiers
    assert through(COUNTER_20, "kms:GetPublicKey", events) == ALLOW  # a card carried over: its events checked
    assert through(CS_202011, "kms:Sign", events) == IMPLICIT_DENY
    [carried] = [s for s in statements(policy) if s.get("Sid") == "CounterVerifiesCarriedCards"]
    assert as_list(carried["Action"]) == ["kms:GetPublicKey"]
    assert carried["Condition"]["ArnLike"]["aws:PrincipalArn"] == [COUNTER_20]
