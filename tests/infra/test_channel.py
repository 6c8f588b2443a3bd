"""The channel between municipalities on the synthesized templates (infra/components/channel.py;
decisions 0041, 0042): the channel queue and key of each municipality tier, the channel
function, the routes through the prefecture and national tiers, and the attacks the IAM shape
stops — a router opening a body, a tier opening another prefecture's body or sealing as another
prefecture's municipality, a CS function using the channel key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra.config import ConfigError, multi_account_example
from infra.naming import Names, municipality_tier, prefecture_tier
from jukinet.settings import ChannelSettings, NationalSettings, PrefectureSettings, load_settings
from embedded_aws.iam_policy import ALLOW, IMPLICIT_DENY, evaluate

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/jukinet"
CHANNEL_20 = f"{ROLE}/muni-200000/jukinet-muni-200000-channel"
CHANNEL_01 = f"{ROLE}/muni-010006/jukinet-muni-010006-channel"
PREF_ROUTER = f"{ROLE}/pref-200000/jukinet-pref-200000-processor"
NATIONAL_ROUTER = f"{ROLE}/national/jukinet-national-processor"
CS_202011 = f"{ROLE}/muni-200000/jukinet-cs-202011"
COUNTER_20 = f"{ROLE}/muni-200000/jukinet-muni-200000-counter"
MUNI_OPERATOR = f"{ROLE}/muni-200000-people/jukinet-muni-200000-operator"


def _resources(synth: Synth, stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in synth.templates[stack]["Resources"].items() if r["Type"] == kind}


def _base(synth: Synth, code: str) -> str:
    return Names.of(synth.deployment).municipality_base_stack(code)


def _key_by_alias(synth: Synth, stack: str, alias: str) -> tuple[str, dict[str, Any]]:
    [target] = [r["Properties"]["TargetKeyId"] for r in _resources(synth, stack, "AWS::KMS::Alias").values()
                if r["Properties"]["AliasName"] == alias]
    lid = target["Fn::GetAtt"][0]
    return lid, synth.templates[stack]["Resources"][lid]["Properties"]["KeyPolicy"]


def _queue(synth: Synth, stack: str, name: str) -> tuple[str, dict[str, Any]]:
    [(lid, res)] = [(lid, r) for lid, r in _resources(synth, stack, "AWS::SQS::Queue").items()
                    if r["Properties"]["QueueName"] == name]
    return lid, res["Properties"]


def _queue_policy(synth: Synth, stack: str, queue_lid: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for r in _resources(synth, stack, "AWS::SQS::QueuePolicy").values():
        if {"Ref": queue_lid} in r["Properties"]["Queues"]:
            found += statements(r["Properties"]["PolicyDocument"])
    return found


def _function(synth: Synth, stack: str, name: str) -> dict[str, Any]:
    [fn] = [r["Properties"] for r in _resources(synth, stack, "AWS::Lambda::Function").values()
            if r["Properties"]["FunctionName"] == name]
    return fn


def _role_policy(synth: Synth, stack: str, function_name: str) -> dict[str, Any]:
    [doc] = [r["Properties"]["PolicyDocument"] for r in _resources(synth, stack, "AWS::IAM::ManagedPolicy").values()
             if r["Properties"].get("Description") == f"Permissions of {function_name}"]
    return doc


def _literal_env(env: dict[str, Any]) -> dict[str, str]:
    """The environment with references replaced by a placeholder (what the settings validate)."""
    return {k: v if isinstance(v, str) else "ref" for k, v in env.items()}


def _key_context(principal: str, **extra: Any) -> dict[str, Any]:
    return {"aws:PrincipalArn": principal, **{f"kms:EncryptionContext:{k}": v for k, v in extra.items()}}


# --- the municipality tier: queue, keys, function ----------------------------------------------
def test_the_channel_queue_and_its_dead_letter_queue_are_encrypted_with_the_channel_transport_key(
        nagano: Synth) -> None:
    base = _base(nagano, "200000")
    transport, _ = _key_by_alias(nagano, base, "alias/jukinet/muni-200000/channel-transport")
    queue_lid, queue = _queue(nagano, base, "jukinet-muni-200000-channel")
    dlq_lid, dlq = _queue(nagano, base, "jukinet-muni-200000-channel-dlq")
    for props in (queue, dlq):
        assert props["KmsMasterKeyId"] == {"Fn::GetAtt": [transport, "Arn"]}
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_lid, "Arn"]}, "maxReceiveCount": 5}
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    # visibility: six times the function's timeout (AWS's guidance for SQS event sources)
    assert queue["VisibilityTimeout"] >= 6 * _function(nagano, base, "jukinet-muni-200000-channel")["Timeout"]
    for lid in (queue_lid, dlq_lid):
        tls = [s for s in _queue_policy(nagano, base, lid) if s["Effect"] == "Deny"
               and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert len(tls) == 1, lid


def test_only_the_prefecture_router_sends_into_the_channel_queue_and_only_the_channel_function_consumes(
        nagano: Synth) -> None:
    base = _base(nagano, "200000")
    queue_lid, _ = _queue(nagano, base, "jukinet-muni-200000-channel")
    policy = {"Statement": _queue_policy(nagano, base, queue_lid)}
    queue_arn = {"Fn::GetAtt": [queue_lid, "Arn"]}
    tls = {"aws:SecureTransport": "true"}
    # the counter nudges its channel function (decision 0046), the tier's own operator redrives
    # (decision 0047): not denied, their IAM policies allow it
    for who, expected in ((PREF_ROUTER, ALLOW), (COUNTER_20, IMPLICIT_DENY), (MUNI_OPERATOR, IMPLICIT_DENY),
                          (NATIONAL_ROUTER, "deny"), (CS_202011, "deny"), (CHANNEL_20, "deny"),
                          (f"{ROLE}/pref-200000-people/jukinet-pref-200000-operator", "deny")):
        got = evaluate(policy, action="sqs:SendMessage", resource=queue_arn, principal=who,
                       context={**tls, "aws:PrincipalArn": who})
        assert got == expected, (who, got)
    for who, expected in ((CHANNEL_20, IMPLICIT_DENY), (PREF_ROUTER, "deny"), (CS_202011, "deny")):
        got = evaluate(policy, action="sqs:ReceiveMessage", resource=queue_arn, principal=who,
                       context={**tls, "aws:PrincipalArn": who})
        assert got == expected, (who, got)  # the consumer's own IAM policy then allows it


def test_the_channel_key_policy_is_decision_0041s_shape(large: Synth) -> None:
    for code, own_role in (("200000", CHANNEL_20), ("010006", CHANNEL_01)):
        pp = code[:2]
        _, policy = _key_by_alias(large, _base(large, code), f"alias/jukinet/channel/{pp}")
        use = {s["Sid"]: s for s in statements(policy)
               if s["Sid"] not in ("Administration", "GrantsForAwsServicesOnly")}
        assert set(use) == {"ChannelFunctionOpens", "ChannelFunctionOf01Seals", "ChannelFunctionOf20Seals",
                            "CounterOpensAnswers"}  # decision 0046: the counter reads its requests' outcomes
        opens = use["ChannelFunctionOpens"]
        assert as_list(opens["Action"]) == ["kms:Decrypt"]
        assert opens["Condition"] == {"ArnLike": {"aws:PrincipalArn": [own_role]},
                                      "StringLike": {"kms:EncryptionContext:to": f"{pp}*"}}
        for sealer_pp, sealer in (("01", CHANNEL_01), ("20", CHANNEL_20)):
            seals = use[f"ChannelFunctionOf{sealer_pp}Seals"]
            assert as_list(seals["Action"]) == ["kms:GenerateDataKey"]
            assert seals["Condition"] == {"ArnLike": {"aws:PrincipalArn": [sealer]},
                                          "StringLike": {"kms:EncryptionContext:from": f"{sealer_pp}*"}}
        # administration never includes a cryptographic operation
        admin = next(s for s in statements(policy) if s["Sid"] == "Administration")
        assert not {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"} & set(as_list(admin["Action"]))


def _key_verdict(policy: dict, action: str, who: str, **context: str) -> str:
    return evaluate(policy, action=action, resource="*", principal=who, context=_key_context(who, **context))


def test_attack_a_router_can_neither_open_nor_seal_a_channel_body(large: Synth) -> None:
    """A compromised prefecture or national processor holds the messages it routes: the channel
    keys refuse it both ways, and its own IAM policy grants no use of a channel key either."""
    routers = (PREF_ROUTER, f"{ROLE}/pref-010006/jukinet-pref-010006-processor", NATIONAL_ROUTER)
    for code in ("200000", "010006"):
        _, policy = _key_by_alias(large, _base(large, code), f"alias/jukinet/channel/{code[:2]}")
        for router in routers:
            assert _key_verdict(policy, "kms:Decrypt", router, to=f"{code[:2]}2011", **{"from": "202029"}) \
                == IMPLICIT_DENY
            assert _key_verdict(policy, "kms:GenerateDataKey", router, to=f"{code[:2]}2011",
                                **{"from": "202029"}) == IMPLICIT_DENY
    names = Names.of(large.deployment)
    for stack, tier in ((names.prefecture_stack("200000"), prefecture_tier("200000")),
                        (names.prefecture_stack("010006"), prefecture_tier("010006")),
                        (names.national_stack(), "national")):
        iam_policy = _role_policy(large, stack, names.processor_function(tier))
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            got = evaluate(iam_policy, action=action, resource=f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any",
                           context={"kms:ResourceAliases": ["alias/jukinet/channel/20"],
                                    "kms:EncryptionContext:to": "202011", "kms:EncryptionContext:from": "202029"})
            assert got == IMPLICIT_DENY, (stack, action)


def test_attack_one_prefectures_channel_function_cannot_open_or_forge_another_prefectures_bodies(
        large: Synth) -> None:
    """Hokkaido's tier holds a request addressed to 長野市 (sealed under Nagano's channel key) or
    wants to seal a body claiming to come from a Nagano municipality: refused by the key policy."""
    _, nagano_key = _key_by_alias(large, _base(large, "200000"), "alias/jukinet/channel/20")
    _, hokkaido_key = _key_by_alias(large, _base(large, "010006"), "alias/jukinet/channel/01")
    assert _key_verdict(nagano_key, "kms:Decrypt", CHANNEL_01, to="202011", **{"from": "012025"}) == IMPLICIT_DENY
    # Nagano's own function with a context naming a Hokkaido reader: not its body to open
    assert _key_verdict(nagano_key, "kms:Decrypt", CHANNEL_20, to="012025", **{"from": "202011"}) == IMPLICIT_DENY
    assert _key_verdict(nagano_key, "kms:Decrypt", CHANNEL_20, to="202011", **{"from": "012025"}) == ALLOW
    # sealing for any reader, but only as a municipality of its own prefecture
    assert _key_verdict(hokkaido_key, "kms:GenerateDataKey", CHANNEL_20, to="012025", **{"from": "202011"}) == ALLOW
    assert _key_verdict(hokkaido_key, "kms:GenerateDataKey", CHANNEL_20, to="012025", **{"from": "012033"}) \
        == IMPLICIT_DENY
    # and the IAM policy of Hokkaido's function decrypts only with its own key
    names = Names.of(large.deployment)
    doc = _role_policy(large, _base(large, "010006"), names.channel_function("010006"))
    [opens] = [s for s in statements(doc) if s.get("Sid") == "OpenBodiesAddressedHere"]
    own_key, _ = _key_by_alias(large, _base(large, "010006"), "alias/jukinet/channel/01")
    assert opens["Resource"] == {"Fn::GetAtt": [own_key, "Arn"]}
    assert opens["Condition"] == {"StringLike": {"kms:EncryptionContext:to": "01*"}}
    decrypts = [s for s in statements(doc) if "kms:Decrypt" in as_list(s["Action"])]
    assert {s["Sid"] for s in decrypts} == {"OpenBodiesAddressedHere", "ChannelQueueEncryption",
                                             "PrefectureQueueEncryption"}
    for s in decrypts:
        if s["Sid"] != "OpenBodiesAddressedHere":
            assert s["Condition"]["StringEquals"]["kms:ViaService"] == "sqs.ap-northeast-1.amazonaws.com"


def test_attack_a_cs_function_or_the_counter_api_cannot_use_the_channel_key(nagano: Synth) -> None:
    """The CS never; the counter (decision 0046) only opens answers and refusals addressed to its
    tier — never a request's body (a request for a resident of its tier that another municipality
    sent), never seals."""
    _, policy = _key_by_alias(nagano, _base(nagano, "200000"), "alias/jukinet/channel/20")
    for who in (CS_202011, COUNTER_20):
        for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
            assert _key_verdict(policy, action, who, to="202011", channel="request", **{"from": "202029"}) \
                == IMPLICIT_DENY, (who, action)
    assert _key_verdict(policy, "kms:Decrypt", COUNTER_20, to="202029", channel="answer", **{"from": "202011"}) \
        == ALLOW
    assert _key_verdict(policy, "kms:Decrypt", COUNTER_20, to="202029", channel="refusal", **{"from": "131016"}) \
        == ALLOW
    assert _key_verdict(policy, "kms:Decrypt", COUNTER_20, to="131016", channel="answer", **{"from": "202011"}) \
        == IMPLICIT_DENY
    assert _key_verdict(policy, "kms:Decrypt", CS_202011, to="202029", channel="answer", **{"from": "202011"}) \
        == IMPLICIT_DENY
    names = Names.of(nagano.deployment)
    [stack] = [s.stack_name for s in nagano.built.municipality_stacks["200000"]
               if names.cs_function("202011") in str(nagano.templates[s.stack_name])][:1]
    doc = _role_policy(nagano, stack, names.cs_function("202011"))
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        got = evaluate(doc, action=action, resource=f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any",
                       context={"kms:ResourceAliases": ["alias/jukinet/channel/20"],
                                "kms:EncryptionContext:to": "202011"})
        assert got == IMPLICIT_DENY, action


def test_the_channel_function_environment_is_what_the_runtime_reads(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    base = _base(nagano, "200000")
    fn = _function(nagano, base, "jukinet-muni-200000-channel")
    env = fn["Environment"]["Variables"]
    settings = load_settings(ChannelSettings, _literal_env(env))
    channel_key, _ = _key_by_alias(nagano, base, "alias/jukinet/channel/20")
    assert env["CHANNEL_KEY_ID"] == {"Fn::GetAtt": [channel_key, "Arn"]}
    assert settings.PREFECTURE_CODE == "200000"
    assert settings.TABLE_NAME == names.card_table("200000")
    assert settings.CHANNEL_KEY_ALIAS_PREFIX + "20" == "alias/jukinet/channel/20"
    assert settings.SIGNING_KEY_ALIAS_PREFIX + "202011" == names.signing_alias("202011")
    assert settings.SENDER_KEY_ALIAS_PREFIX == f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:alias/jukinet/signing/"
    assert settings.OUTBOUND_QUEUE_URL == \
        f"https://sqs.ap-northeast-1.amazonaws.com/{ACCOUNT}/jukinet-pref-200000-inbound"
    assert fn["Handler"] == "jukinet.handlers.channel_endpoint.handler"
    [mapping] = [r["Properties"] for r in _resources(nagano, base, "AWS::Lambda::EventSourceMapping").values()
                 if r["Properties"]["FunctionName"] == {"Ref": next(
                     lid for lid, r in _resources(nagano, base, "AWS::Lambda::Function").items()
                     if r["Properties"]["FunctionName"] == "jukinet-muni-200000-channel")}]
    queue_lid, _ = _queue(nagano, base, "jukinet-muni-200000-channel")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_lid, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_channel_function_has_only_what_its_messages_need(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    base = _base(nagano, "200000")
    doc = _role_policy(nagano, base, names.channel_function("200000"))
    by_sid = {s["Sid"]: s for s in statements(doc)}
    municipalities = sorted(m.code for m in nagano.deployment.prefectures[0].municipality_tier.municipalities)
    sign = by_sid["SignAsOwnMunicipalities"]
    assert as_list(sign["Action"]) == ["kms:Sign"]
    assert sign["Condition"]["StringEquals"] == {"kms:SigningAlgorithm": "ECDSA_SHA_256"}
    assert sign["Condition"]["ForAnyValue:StringEquals"]["kms:ResourceAliases"] == [
        f"alias/jukinet/signing/{c}" for c in municipalities]
    # not the prefecture's key, nor by alias the card-event key (SignCardEvents names that one key by ARN:
    # tests/infra/test_card_across_tiers.py)
    for alias in ("alias/jukinet/signing/200000", "alias/jukinet/muni-200000/card-events"):
        got = evaluate(doc, action="kms:Sign", resource=f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any",
                       context={"kms:ResourceAliases": [alias], "kms:SigningAlgorithm": "ECDSA_SHA_256"})
        assert got == IMPLICIT_DENY, alias
    assert by_sid["SealForReaders"]["Condition"] == {
        "StringLike": {"kms:EncryptionContext:from": "20*"},
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/jukinet/channel/20"]}}
    assert by_sid["VerifyChannelSenders"]["Condition"] == {
        "ForAnyValue:StringLike": {"kms:ResourceAliases": ["alias/jukinet/signing/20*"]}}
    assert by_sid["ChannelRecords"]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
        "CHANNEL#20*", "CHANNEL-IN#20*", "CHANNEL-DEAD#*", "META", "RESIDENT#*", "COPY#20*", "COPY-ELSEWHERE#20*",
        "CARD#*", "SPECIAL-IN#20*", "SPECIAL-OUT#20*", "REMOTE-CHALLENGE#*", "CALL#20*", "STAT#20*", "CARDREQ#20*"]}}
    assert "dynamodb:DeleteItem" not in as_list(by_sid["ChannelRecords"]["Action"])
    assert by_sid["SendToPrefecture"]["Resource"] == \
        f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-pref-200000-inbound"
    # no access to the CS state table (the notices' sequence numbers) or the drop zones
    for s in statements(doc):
        assert "cs-state" not in str(s.get("Resource")) and "s3:" not in str(s["Action"]), s["Sid"]


def test_every_municipality_signing_key_lets_only_its_own_tiers_channel_function_sign(large: Synth) -> None:
    checked = 0
    for code, stacks in large.built.municipality_stacks.items():
        own = CHANNEL_20 if code == "200000" else CHANNEL_01
        other = CHANNEL_01 if code == "200000" else CHANNEL_20
        for stack in stacks:
            for r in _resources(large, stack.stack_name, "AWS::KMS::Key").values():
                policy = r["Properties"]["KeyPolicy"]
                by_sid = {s["Sid"]: s for s in statements(policy)}
                assert by_sid["ChannelFunctionSigns"]["Condition"] == {
                    "ArnLike": {"aws:PrincipalArn": [own]},
                    "StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}
                sign = {"kms:SigningAlgorithm": "ECDSA_SHA_256"}
                assert evaluate(policy, action="kms:Sign", principal=own,
                                context={**sign, "aws:PrincipalArn": own}) == ALLOW
                for who in (other, PREF_ROUTER, NATIONAL_ROUTER, COUNTER_20):
                    assert evaluate(policy, action="kms:Sign", principal=who,
                                    context={**sign, "aws:PrincipalArn": who}) == IMPLICIT_DENY, who
                for who in (other, own, PREF_ROUTER, NATIONAL_ROUTER,
                            f"{ROLE}/pref-010006/jukinet-pref-010006-processor"):
                    assert evaluate(policy, action="kms:GetPublicKey", principal=who,
                                    context={"aws:PrincipalArn": who}) == ALLOW, who
                checked += 1
    assert checked == sum(len(p.municipality_tier.municipalities) for p in large.deployment.prefectures)


# --- the routers ---------------------------------------------------------------------------------
def test_the_prefecture_routes_down_to_its_municipality_tiers_channel_queue_only(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    stack = names.prefecture_stack("200000")
    fn = _function(nagano, stack, names.processor_function(prefecture_tier("200000")))
    env = fn["Environment"]["Variables"]
    settings = load_settings(PrefectureSettings, _literal_env(env))
    assert settings.CHANNEL_QUEUE_URL == \
        f"https://sqs.ap-northeast-1.amazonaws.com/{ACCOUNT}/jukinet-muni-200000-channel"
    doc = _role_policy(nagano, stack, names.processor_function(prefecture_tier("200000")))
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert by_sid["RouteDownToMunicipalities"]["Resource"] == \
        f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-muni-200000-channel"
    assert by_sid["ChannelQueueEncryption"]["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": ["alias/jukinet/muni-200000/channel-transport"]}
    sends = sorted(str(s["Resource"]) for s in statements(doc) if "sqs:SendMessage" in as_list(s["Action"]))
    assert len(sends) == 3  # the national inbound queue, its own dead letters, the channel queue
    # the tier's SQS endpoint lets its roles send to the channel queue as well
    endpoint_policies = [r["Properties"]["PolicyDocument"]
                         for r in _resources(nagano, stack, "AWS::EC2::VPCEndpoint").values()
                         if r["Properties"].get("PolicyDocument")]
    assert any(f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-muni-200000-channel" in as_list(s["Resource"])
               for d in endpoint_policies for s in statements(d))


def test_the_national_tier_routes_to_each_prefectures_inbound_queue_and_verifies_any_municipality(
        large: Synth) -> None:
    names = Names.of(large.deployment)
    stack = names.national_stack()
    fn = _function(large, stack, names.processor_function("national"))
    settings = load_settings(NationalSettings, _literal_env(fn["Environment"]["Variables"]))
    for p in large.deployment.prefectures:
        assert settings.PREFECTURE_INBOUND_URL_TEMPLATE.format(prefecture=p.code) == \
            f"https://sqs.ap-northeast-1.amazonaws.com/{ACCOUNT}/jukinet-pref-{p.code}-inbound"
    doc = _role_policy(large, stack, names.processor_function("national"))
    by_sid = {s["Sid"]: s for s in statements(doc)}
    assert sorted(as_list(by_sid["RouteDownToPrefectures"]["Resource"])) == [
        f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-pref-010006-inbound",
        f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-pref-200000-inbound"]
    assert by_sid["VerifyChannelSenders"]["Condition"] == {
        "ForAnyValue:StringLike": {"kms:ResourceAliases": ["alias/jukinet/signing/01*", "alias/jukinet/signing/20*"]}}
    assert as_list(by_sid["VerifyChannelSenders"]["Action"]) == ["kms:GetPublicKey"]


def test_each_prefecture_inbound_queue_admits_the_national_router_by_its_role_only(large: Synth) -> None:
    names = Names.of(large.deployment)
    for p in large.deployment.prefectures:
        stack = names.prefecture_stack(p.code)
        queue_lid, _ = _queue(large, stack, names.inbound_queue(prefecture_tier(p.code)))
        policy = {"Statement": _queue_policy(large, stack, queue_lid)}
        arn = {"Fn::GetAtt": [queue_lid, "Arn"]}
        outside = {"aws:SourceVpce": "vpce-0elsewhere", "aws:SecureTransport": "true"}
        for who, expected in ((NATIONAL_ROUTER, ALLOW), (f"{ROLE}/national/jukinet-national-ledger-watch", "deny"),
                              (f"{ROLE}/national/jukinet-provision-api", "deny")):
            got = evaluate(policy, action="sqs:SendMessage", resource=arn, principal=who,
                           context={**outside, "aws:PrincipalArn": who})
            assert got == expected, (p.code, who, got)
        # and the prefecture's transport key lets it encrypt through SQS only
        _, key = _key_by_alias(large, stack, names.key_alias(prefecture_tier(p.code), "transport"))
        [routers] = [s for s in statements(key) if s["Sid"].startswith("ChannelRoutersEncrypt")]
        assert routers["Condition"]["ArnLike"] == {"aws:PrincipalArn": [NATIONAL_ROUTER]}
        assert routers["Condition"]["StringEquals"] == {"kms:ViaService": ["sqs.ap-northeast-1.amazonaws.com"]}


# --- alarms and configuration -------------------------------------------------------------------
def test_each_municipality_tier_alarms_on_channel_dead_letters_and_errors(large: Synth) -> None:
    for p in large.deployment.prefectures:
        tier = municipality_tier(p.code)
        alarms = {r["Properties"]["AlarmName"]: r["Properties"]
                  for r in _resources(large, _base(large, p.code), "AWS::CloudWatch::Alarm").values()}
        dlq = alarms[f"jukinet-{tier}-channel-dlq-not-empty"]
        assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [
            _queue(large, _base(large, p.code), f"jukinet-{tier}-channel-dlq")[0], "QueueName"]}}]
        errors = alarms[f"jukinet-{tier}-channel-errors"]
        assert errors["MetricName"] == "Errors" and errors["Threshold"] == 0
        for alarm in (dlq, errors):
            assert alarm["AlarmActions"] and alarm["OKActions"]
            assert "docs/operations.md#channel-" in alarm["AlarmDescription"]


def test_each_municipality_tier_alarms_on_what_its_channel_function_dead_lettered(nagano: Synth) -> None:
    """``channel-dead-letters`` on ChannelDeadLettered with the dimensions the channel function
    emits ({service, tier}: observability.use_tier("municipality")); the embedded AWS fires it
    (tests/channel/test_channel_alarms.py)."""
    alarms = {r["Properties"]["AlarmName"]: r["Properties"]
              for r in _resources(nagano, _base(nagano, "200000"), "AWS::CloudWatch::Alarm").values()}
    alarm = alarms["jukinet-muni-200000-channel-dead-letters"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (
        "Jukinet", "ChannelDeadLettered", "Sum", 0)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "jukinet-muni-200000"},
                                   {"Name": "tier", "Value": "municipality"}]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmDescription"].endswith("See docs/operations.md#channel-dead-letters.")
    assert alarm["AlarmActions"] and alarm["OKActions"]


# --- people on the channel queues (decision 0047) -------------------------------------------------
def _people(synth: Synth, kind: str, tier: str = "muni-200000") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A people role's policy documents and its session's context."""
    template = synth.templates[_base(synth, "200000") if tier == "muni-200000" else _tier_stack(synth, tier)]
    [role] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"
              and r["Properties"].get("RoleName") == f"jukinet-{tier}-{kind}"]
    docs = [template["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"] for ref in role["ManagedPolicyArns"]]
    return docs, {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role{role['Path']}{role['RoleName']}"}


def _tier_stack(synth: Synth, tier: str) -> str:
    return {s.tier: s.stack_name for s in synth.built.stacks if hasattr(s, "tier")}[tier]


def _sqs(name: str) -> str:
    return f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:{name}"


CHANNEL_QUEUE, CHANNEL_DLQ = _sqs("jukinet-muni-200000-channel"), _sqs("jukinet-muni-200000-channel-dlq")
OTHER_QUEUE, OTHER_DLQ = _sqs("jukinet-muni-130001-channel"), _sqs("jukinet-muni-130001-channel-dlq")


def test_the_municipality_tiers_operator_redrives_its_channel_dead_letters_and_nothing_else(nagano: Synth) -> None:
    docs, me = _people(nagano, "operator")
    base = _base(nagano, "200000")
    transport, _ = _key_by_alias(nagano, base, "alias/jukinet/muni-200000/channel-transport")
    transport_arn = {"Fn::GetAtt": [transport, "Arn"]}
    via_sqs = {**me, "kms:ViaService": "sqs.ap-northeast-1.amazonaws.com"}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert evaluate(docs, action=action, resource=CHANNEL_DLQ, context=me) == ALLOW, action
    assert evaluate(docs, action="sqs:SendMessage", resource=CHANNEL_QUEUE, context=me) == ALLOW
    for queue in (CHANNEL_DLQ, CHANNEL_QUEUE):
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            assert evaluate(docs, action=action, resource=transport_arn,
                            context={**via_sqs, "kms:EncryptionContext:aws:sqs:arn": queue}) == ALLOW
    record = f"arn:aws:ssm:ap-northeast-1:{ACCOUNT}:parameter/jukinet/redrive/muni-200000/20030120T010000Z"
    assert evaluate(docs, action="ssm:PutParameter", resource=record, context=me) == ALLOW
    refused = [
        ("sqs:ReceiveMessage", CHANNEL_QUEUE, me),          # read requests in flight
        ("sqs:PurgeQueue", CHANNEL_DLQ, me),                # destroy the dead letters
        ("sqs:PurgeQueue", CHANNEL_QUEUE, me),
        ("sqs:SendMessage", CHANNEL_DLQ, me),               # make up dead letters
        ("sqs:ReceiveMessage", OTHER_DLQ, me),              # another municipality tier's dead letters
        ("sqs:DeleteMessage", OTHER_DLQ, me),
        ("sqs:SendMessage", OTHER_QUEUE, me),               # another municipality tier's channel
        ("sqs:SendMessage", _sqs("jukinet-pref-200000-inbound"), me),
        ("kms:Decrypt", transport_arn, {**me, "kms:EncryptionContext:aws:sqs:arn": CHANNEL_DLQ}),  # outside SQS
        ("kms:Decrypt", transport_arn, {**via_sqs, "kms:EncryptionContext:aws:sqs:arn": OTHER_DLQ}),
        ("kms:Decrypt", transport_arn, {**via_sqs, "kms:EncryptionContext:aws:sqs:arn":
                                        _sqs("jukinet-cs-failed-events-200000")}),
        ("ssm:PutParameter", f"arn:aws:ssm:ap-northeast-1:{ACCOUNT}:parameter/jukinet/redrive/muni-130001/x", me),
    ]
    for action, resource, context in refused:
        assert evaluate(docs, action=action, resource=resource, context=context) != ALLOW, (action, resource)
    # The prefecture's operator reaches neither of the municipality tier's channel queues.
    pref_docs, pref_me = _people(nagano, "operator", "pref-200000")
    for action, queue in (("sqs:ReceiveMessage", CHANNEL_DLQ), ("sqs:SendMessage", CHANNEL_QUEUE)):
        assert evaluate(pref_docs, action=action, resource=queue, context=pref_me) != ALLOW, action


def test_the_channel_transport_key_admits_the_operator_through_sqs_for_the_two_channel_queues_only(
        nagano: Synth) -> None:
    _, policy = _key_by_alias(nagano, _base(nagano, "200000"), "alias/jukinet/muni-200000/channel-transport")
    [redrive] = [s for s in statements(policy) if s.get("Sid") == "OperatorRedrives"]
    assert sorted(as_list(redrive["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert as_list(redrive["Condition"]["ArnLike"]["aws:PrincipalArn"]) == [MUNI_OPERATOR]
    assert sorted(redrive["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sqs:arn"]) == [
        CHANNEL_QUEUE, CHANNEL_DLQ]
    [glass] = [s for s in statements(policy) if s.get("Sid") == "BreakGlassReadsDeadLetters"]
    assert as_list(glass["Action"]) == ["kms:Decrypt"]


def test_no_other_person_reads_channel_dead_letters_or_uses_the_channel_transport_key_even_if_allowed(
        nagano: Synth) -> None:
    """The guardrail: an auditor, a security officer or the chief holding an Allow from elsewhere
    in the account is refused the channel DLQ and its key; the channel queue is closed to all people."""
    base = _base(nagano, "200000")
    template = nagano.templates[base]
    transport, _ = _key_by_alias(nagano, base, "alias/jukinet/muni-200000/channel-transport")
    [guardrail] = [r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
                   if r["Type"] == "AWS::IAM::ManagedPolicy"
                   and r["Properties"].get("ManagedPolicyName") == "jukinet-muni-200000-people-guardrails"]
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    for kind in ("auditor", "security-officer", "chief-security-officer", "network-administrator", "operator"):
        who = {"aws:PrincipalArn": f"{ROLE}/muni-200000-people/jukinet-muni-200000-{kind}"}
        docs = [guardrail, everything]
        assert evaluate(docs, action="sqs:ReceiveMessage", resource=CHANNEL_QUEUE, context=who) == "deny", kind
        assert evaluate(docs, action="sqs:PurgeQueue", resource=CHANNEL_DLQ, context=who) == "deny", kind
        if kind != "operator":
            assert evaluate(docs, action="sqs:ReceiveMessage", resource=CHANNEL_DLQ, context=who) == "deny", kind
            assert evaluate(docs, action="kms:Decrypt", resource={"Fn::GetAtt": [transport, "Arn"]},
                            context={**who, "kms:ViaService": "sqs.ap-northeast-1.amazonaws.com",
                                     "kms:EncryptionContext:aws:sqs:arn": CHANNEL_DLQ}) == "deny", kind


def test_break_glass_reads_the_channel_dead_letters_with_a_reason(nagano: Synth) -> None:
    docs, me = _people(nagano, "break-glass")
    dlq_lid, _ = _queue(nagano, _base(nagano, "200000"), "jukinet-muni-200000-channel-dlq")
    session = {**me, "aws:SourceIdentity": "officer", "aws:PrincipalTag/reason": "incident 7"}
    dlq = {"Fn::GetAtt": [dlq_lid, "Arn"]}
    assert evaluate(docs, action="sqs:ReceiveMessage", resource=dlq, context=session) == ALLOW
    assert evaluate(docs, action="sqs:ReceiveMessage", resource=dlq, context=me) != ALLOW  # no reason, no read
    assert evaluate(docs, action="sqs:PurgeQueue", resource=dlq, context=session) != ALLOW


def test_nobody_purges_a_channel_queue_and_the_channel_function_cannot_read_its_dead_letters(
        nagano: Synth) -> None:
    base = _base(nagano, "200000")
    function = _role_policy(nagano, base, "jukinet-muni-200000-channel")
    for name, arn in (("jukinet-muni-200000-channel", CHANNEL_QUEUE), ("jukinet-muni-200000-channel-dlq", CHANNEL_DLQ)):
        lid, _ = _queue(nagano, base, name)
        policy = {"Statement": _queue_policy(nagano, base, lid)}
        for who in (CHANNEL_20, MUNI_OPERATOR, PREF_ROUTER, f"arn:aws:iam::{ACCOUNT}:root"):
            assert evaluate(policy, action="sqs:PurgeQueue", resource={"Fn::GetAtt": [lid, "Arn"]}, principal=who,
                            context={"aws:SecureTransport": "true", "aws:PrincipalArn": who}) == "deny", (name, who)
        assert evaluate(function, action="sqs:PurgeQueue", resource=arn) != ALLOW
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):  # a compromised function cannot replay or drop them
        assert evaluate(function, action=action, resource=CHANNEL_DLQ) != ALLOW


def test_the_emergency_roles_stop_the_channel_function_pause_its_mapping_and_hold_its_queue(nagano: Synth) -> None:
    channel = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-muni-200000-channel"
    mapping = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:event-source-mapping:0f1e2d3c"
    for kind in ("operator", "chief-security-officer"):
        docs, me = _people(nagano, kind)
        assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=channel, context=me) == ALLOW, kind
        assert evaluate(docs, action="lambda:UpdateEventSourceMapping", resource=mapping,
                        context={**me, "lambda:FunctionArn": channel}) == ALLOW, kind
        assert evaluate(docs, action="sqs:SetQueueAttributes", resource=CHANNEL_QUEUE, context=me) == ALLOW, kind
        # stopping is not invoking: no one hands the channel function a batch of their own making
        assert evaluate(docs, action="lambda:InvokeFunction", resource=channel, context=me) != ALLOW, kind
        assert evaluate(docs, action="lambda:UpdateFunctionCode", resource=channel, context=me) != ALLOW, kind
    pref_docs, pref_me = _people(nagano, "operator", "pref-200000")
    assert evaluate(pref_docs, action="lambda:PutFunctionConcurrency", resource=channel, context=pref_me) != ALLOW
    docs, me = _people(nagano, "auditor")
    assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=channel, context=me) != ALLOW
    assert evaluate(docs, action="lambda:GetFunctionConfiguration", resource=channel, context=me) == ALLOW


def test_the_prefectures_reconciliation_reads_its_municipalities_channel_records_only(nagano: Synth) -> None:
    """``ReadChannelRecords``: Query on the municipality tier's card table, only the partitions of
    the requests and answers of the prefecture's municipalities (decision 0047); the national
    tier's reconciliation reads none."""
    pref = _tier_stack(nagano, "pref-200000")
    policy = _role_policy(nagano, pref, "jukinet-pref-200000-reconciliation")
    table = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/jukinet-muni-200000-cards"
    for key in ("CHANNEL#202011#2003-01", "CHANNEL-IN#202029#2003-01"):
        assert evaluate(policy, action="dynamodb:Query", resource=table,
                        context={"dynamodb:LeadingKeys": [key]}) == ALLOW, key
    for key in ("RESIDENT#00000000019", "CHANNEL-DEAD#2003-01", "CHANNEL#131016#2003-01", "META", "CARD#x"):
        assert evaluate(policy, action="dynamodb:Query", resource=table,
                        context={"dynamodb:LeadingKeys": [key]}) != ALLOW, key
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "kms:Decrypt"):
        assert evaluate(policy, action=action, resource=table, context={"dynamodb:LeadingKeys": ["CHANNEL#20"]}) \
            != ALLOW, action
    national = _role_policy(nagano, _tier_stack(nagano, "national"), "jukinet-national-reconciliation")
    assert evaluate(national, action="dynamodb:Query", resource=table,
                    context={"dynamodb:LeadingKeys": ["CHANNEL#202011#2003-01"]}) != ALLOW


def test_a_channel_across_accounts_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="channel between municipalities needs every prefecture and municipality "
                                          "tier in one account"):
        dataclasses.replace(multi_account_example(), channel=True)
    assert multi_account_example().channel is False
