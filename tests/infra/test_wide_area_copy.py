"""The wide-area copy on the synthesized templates (decision 0046): what the counter function may
do on the channel (nudge its tier's channel function, open answers), what the channel function
may read to answer (its municipalities' local records, read only), and the attacks that shape
stops — a counter sealing or opening a request, a counter of another tier, the channel function
writing the local records."""

from __future__ import annotations

import json

import pytest

from infra.naming import Names
from jukinet.settings import CardSettings, ChannelSettings, load_settings
from embedded_aws.iam_policy import ALLOW, IMPLICIT_DENY, evaluate

from .conftest import Synth, as_list, statements
from .test_channel import ACCOUNT, _base, _function, _literal_env, _role_policy

pytestmark = pytest.mark.slow

KEY = f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any"


def test_the_counter_function_environment_is_what_the_runtime_reads(nagano: Synth) -> None:
    base = _base(nagano, "200000")
    env = _function(nagano, base, "jukinet-muni-200000-counter")["Environment"]["Variables"]
    settings = load_settings(CardSettings, _literal_env(env))
    assert settings.CHANNEL_QUEUE_URL == \
        f"https://sqs.ap-northeast-1.amazonaws.com/{ACCOUNT}/jukinet-muni-200000-channel"
    assert settings.CHANNEL_KEY_ID == f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:alias/jukinet/channel/20"
    assert settings.MUNICIPALITY_NAMES_FILE == "municipality-names.json"
    channel_env = _function(nagano, base, "jukinet-muni-200000-channel")["Environment"]["Variables"]
    assert load_settings(ChannelSettings, _literal_env(channel_env)).LOCAL_RECORDS_TABLE_NAME == \
        Names.of(nagano.deployment).local_record_table("200000")


def test_the_municipality_names_file_names_every_municipality() -> None:
    from infra.components.counter import municipality_names
    from infra.config import load_deployment
    deployment = load_deployment("nagano-demo")
    names = json.loads(municipality_names(deployment))
    assert names["202011"] == "長野市" and names["202029"] == "松本市"
    assert len(names) == sum(len(p.municipality_tier.municipalities) for p in deployment.prefectures)


def test_the_counter_may_nudge_and_open_answers_but_neither_seal_nor_sign_nor_open_requests(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    doc = _role_policy(nagano, _base(nagano, "200000"), names.card_api("200000"))
    by_sid = {s.get("Sid"): s for s in statements(doc)}
    assert by_sid["NudgeChannelFunction"]["Resource"] == \
        f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-muni-200000-channel"
    answer = {"kms:ResourceAliases": ["alias/jukinet/channel/20"], "kms:EncryptionContext:to": "202029",
              "kms:EncryptionContext:channel": "answer"}
    assert evaluate(doc, action="kms:Decrypt", resource=KEY, context=answer) == ALLOW
    for context in ({**answer, "kms:EncryptionContext:channel": "request"},  # a request addressed to the tier
                    {**answer, "kms:EncryptionContext:to": "131016"},
                    {**answer, "kms:ResourceAliases": ["alias/jukinet/channel/13"]}):
        assert evaluate(doc, action="kms:Decrypt", resource=KEY, context=context) == IMPLICIT_DENY, context
    for action in ("kms:GenerateDataKey", "kms:Encrypt"):
        assert evaluate(doc, action=action, resource=KEY, context={**answer, "kms:ViaService": "kms"}) \
            == IMPLICIT_DENY, action
    # never a municipality's notice-signing key (decision 0026 stands)
    got = evaluate(doc, action="kms:Sign", resource=KEY, context={"kms:ResourceAliases": ["alias/jukinet/signing/202029"],
                                                                  "kms:SigningAlgorithm": "ECDSA_SHA_256"})
    assert got == IMPLICIT_DENY
    # no route to the prefecture: the counter sends nothing upward itself
    assert evaluate(doc, action="sqs:SendMessage", resource=f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:"
                    "jukinet-pref-200000-inbound") == IMPLICIT_DENY


def test_the_channel_function_reads_its_municipalities_local_records_and_never_writes_them(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    doc = _role_policy(nagano, _base(nagano, "200000"), names.channel_function("200000"))
    table = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/{names.local_record_table('200000')}"
    for action, resource in (("dynamodb:Query", table), ("dynamodb:Query", f"{table}/index/by_household"),
                             ("dynamodb:GetItem", table)):
        assert evaluate(doc, action=action, resource=resource,
                        context={"dynamodb:LeadingKeys": ["MUNI#202011#R#24727059608"]}) == ALLOW, action
    assert evaluate(doc, action="dynamodb:Query", resource=table,
                    context={"dynamodb:LeadingKeys": ["MUNI#131016#R#24727059608"]}) == IMPLICIT_DENY
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"):
        assert evaluate(doc, action=action, resource=table,
                        context={"dynamodb:LeadingKeys": ["MUNI#202011#R#24727059608"]}) == IMPLICIT_DENY, action
    [read] = [s for s in statements(doc) if s.get("Sid") == "ReadLocalRecords"]
    assert as_list(read["Action"]) == ["dynamodb:GetItem", "dynamodb:Query"]
