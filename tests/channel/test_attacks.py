"""Attacks on the channel, each written as the attack: an insider with one municipality's or
one router's rights."""

from __future__ import annotations

import base64
import datetime as dt
import json

import boto3
import pytest

from jukinet.adapters.kms import Signer
from jukinet.domain import channel
from jukinet.domain.channel import Envelope, Kind, Outcome
from jukinet.services.channel import ChannelKeys
from jukinet.services.tier_processor import PermanentFailure

from .world import CHANNEL, CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, REGION, TOKYO_PREF, UEDA, World, resident


def _request_as(world: World, *, signer_code: str, claimed: str, recipient: str, query: dict) -> str:
    """A request built by ``signer_code``'s function (its own key) claiming to be ``claimed``."""
    correlation = channel.new_correlation_id(claimed, world.now)
    keys = ChannelKeys(world.keys[f"channel-{NAGANO_PREF}"], CHANNEL)
    plaintext = json.dumps(query).encode()
    wrapped, body = keys.seal(Kind.REQUEST, correlation, claimed, recipient, plaintext)
    envelope = Envelope(Kind.REQUEST, claimed, recipient, correlation, world.now,
                        world.now + dt.timedelta(seconds=30), wrapped, body)
    return Signer(world.keys[f"sign-{signer_code}"], claimed).sign_bytes(envelope.to_bytes()).to_body()


def test_a_municipality_forging_anothers_identity_is_refused_by_the_prefecture(world: World) -> None:
    # 上田市 (C) asks 長野市 (A) about A's resident, claiming to be 松本市 (B), signing with its own key.
    world.register(resident(11), NAGANO)
    forged = _request_as(world, signer_code=UEDA, claimed=MATSUMOTO, recipient=NAGANO,
                         query={"query": "resident-status", "resident_code": resident(11)})
    world.send("pref-200000", forged)
    world.pump()
    [dead] = world.dead_letters("pref-200000")
    assert (dead["jukinet.reason"], dead["jukinet.field"], dead["jukinet.rule"]) == \
        ("signature_invalid", "envelope.sig", "signature")
    assert dead["jukinet.sender"] == MATSUMOTO
    assert [q for q, _ in world.delivered] == ["pref-200000"]  # it never reached 長野市's tier
    routers = world.endpoint(NAGANO_PREF).store.dead_letters.__class__(f"jukinet-pref-{NAGANO_PREF}")
    assert routers.counts("2003-01") == {"signature_invalid": 1}
    # Sent again, the same forgery is dead-lettered again but counted once.
    world.send("pref-200000", forged)
    world.pump()
    assert routers.counts("2003-01") == {"signature_invalid": 1}


def test_a_forgery_around_the_prefecture_is_refused_by_the_home_tier_too(world: World) -> None:
    world.register(resident(12), NAGANO)
    forged = _request_as(world, signer_code=UEDA, claimed=MATSUMOTO, recipient=NAGANO,
                         query={"query": "resident-status", "resident_code": resident(12)})
    world.send("muni-200000", forged)
    world.pump()
    [dead] = world.dead_letters("muni-200000")
    assert dead["jukinet.reason"] == "signature_invalid"
    assert world.endpoint(NAGANO_PREF).store.answers_given(NAGANO, "2003-01") == {}


def test_a_replayed_request_has_one_effect(world: World) -> None:
    world.register(resident(13), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(13)})
    world.pump()
    request = next(body for q, body in world.delivered if q == "pref-200000")
    first_answer = [body for q, body in world.delivered if q == "muni-200000"]
    world.delivered.clear()
    for _ in range(3):  # an insider on the prefecture's queue replays the captured request
        world.send("pref-200000", request)
    world.now += dt.timedelta(seconds=5)
    world.pump()
    assert world.endpoint(TOKYO_PREF).store.answers_given(CHIYODA, "2003-01") == {"answer": 1}
    # The home municipality sent its one signed answer again, byte for byte: nothing new was decided.
    assert {body for q, body in world.delivered if q == "muni-200000"} == set(first_answer)
    assert nagano.result(correlation).outcome is Outcome.ANSWERED
    assert nagano.reconcile(NAGANO, "2003-01").requested == 1


def test_a_request_reusing_a_correlation_id_is_dead_lettered(world: World) -> None:
    world.register(resident(14), MATSUMOTO)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": resident(14)})
    world.pump()
    # 長野市's own function sends a different query under the answered request's id.
    keys = nagano.keys
    wrapped, body = keys.seal(Kind.REQUEST, correlation, NAGANO, MATSUMOTO, b'{"query":"resident-status"}')
    other = Envelope(Kind.REQUEST, NAGANO, MATSUMOTO, correlation, world.now, world.now + dt.timedelta(seconds=30),
                     wrapped, body)
    world.send("pref-200000", Signer(world.keys[f"sign-{NAGANO}"], NAGANO).sign_bytes(other.to_bytes()).to_body())
    world.pump()
    assert [d["jukinet.reason"] for d in world.dead_letters("muni-200000")] == ["correlation_reused"]


@pytest.mark.parametrize("alteration", ["body", "kind", "key"])
def test_an_answer_altered_by_the_prefecture_is_refused_at_the_requester(world: World, alteration: str) -> None:
    world.register(resident(15), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(15)})
    world.pump(hold={"muni-200000"})
    [held] = world.sqs.receive_message(QueueUrl=world.queues["muni-200000"])["Messages"]
    world.sqs.delete_message(QueueUrl=world.queues["muni-200000"], ReceiptHandle=held["ReceiptHandle"])
    # The prefecture (長野県) alters the answer on its way down and passes the signature on.
    wire = json.loads(held["Body"])
    envelope = json.loads(base64.b64decode(wire["payload"]))
    if alteration == "body":
        sealed = bytearray(base64.b64decode(envelope["body"]))
        sealed[-1] ^= 1
        envelope["body"] = base64.b64encode(bytes(sealed)).decode()
    elif alteration == "kind":
        envelope["kind"] = "refusal"
    else:  # a data key of its own making under 長野市's channel key (as if it could GenerateDataKey)
        envelope["key"] = base64.b64encode(world.kms.generate_data_key(
            KeyId=world.keys[f"channel-{NAGANO_PREF}"], KeySpec="AES_256",
            EncryptionContext=channel.encryption_context(Kind.ANSWER, correlation, CHIYODA, NAGANO))
            ["CiphertextBlob"]).decode()
    wire["payload"] = base64.b64encode(json.dumps(envelope, separators=(",", ":")).encode()).decode()
    world.send("muni-200000", json.dumps(wire))
    world.pump()
    [dead] = world.dead_letters("muni-200000")
    assert dead["jukinet.reason"] == "signature_invalid"
    assert nagano.result(correlation).outcome is Outcome.PENDING


def test_another_tier_cannot_open_the_answer(world: World) -> None:
    """長野市's answer is sealed under a data key of 長野県's municipality tier's channel key with
    the request's context: 東京都's tier (its own key) and a function claiming another
    municipality (another context) get nothing from KMS. (Who may call Decrypt at all is the key
    policy's business: not yet synthesized, docs/second-phase.md.)"""
    world.register(resident(16), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, CHIYODA, {"query": "resident-status", "resident_code": resident(16)})
    world.pump()
    answer = Envelope.from_bytes(bytes(nagano.store.request(correlation)["answer"]["B"]))
    tokyo_keys = ChannelKeys(world.keys[f"channel-{TOKYO_PREF}"], CHANNEL)
    with pytest.raises(PermanentFailure) as refused:
        tokyo_keys.open(answer)
    assert refused.value.reason == "undecryptable"
    kms = boto3.client("kms", region_name=REGION)
    with pytest.raises(Exception) as wrong_context:
        kms.decrypt(CiphertextBlob=answer.wrapped_key, KeyId=world.keys[f"channel-{NAGANO_PREF}"],
                    EncryptionContext=channel.encryption_context(Kind.ANSWER, correlation, CHIYODA, UEDA))
    assert "InvalidCiphertext" in type(wrong_context.value).__name__ or "InvalidCiphertext" in str(wrong_context.value)
    assert nagano.result(correlation).answer["municipality"] == CHIYODA


def test_a_router_refuses_what_it_may_not_carry(world: World) -> None:
    # A message between two Tokyo municipalities has no business in 長野県's queue.
    forged = _request_as(world, signer_code=CHIYODA, claimed=CHIYODA, recipient="131024",
                         query={"query": "resident-status", "resident_code": resident(17)})
    world.send("pref-200000", forged)
    world.pump()
    assert [d["jukinet.reason"] for d in world.dead_letters("pref-200000")] == ["not_routable"]


def test_an_expired_request_is_dead_lettered_by_the_router(world: World) -> None:
    world.register(resident(18), MATSUMOTO)
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, MATSUMOTO, {"query": "resident-status", "resident_code": resident(18)},
                                 wait=dt.timedelta(seconds=5))
    world.now += dt.timedelta(seconds=6)
    world.pump()
    [dead] = world.dead_letters("pref-200000")
    assert (dead["jukinet.reason"], dead["jukinet.rule"]) == ("deadline_passed", "expired")
    assert nagano.result(correlation).outcome is Outcome.TIMED_OUT


def test_a_body_that_only_looks_like_json_stays_with_the_notice_processor(world: World) -> None:
    """Only a payload with a channel version is the channel's: ``{}`` with a bad signature is
    the notice processor's dead letter, counted under ``unknown`` as before (the channel
    cannot be used to move a forgery out of the notice ledgers)."""
    from jukinet.services.channel import is_channel_message

    assert not is_channel_message(json.dumps({"v": 1, "sender": UEDA, "alg": "ECDSA_SHA_256", "payload": "e30=",
                                              "sig": "AAAA"}))
    forged = _request_as(world, signer_code=UEDA, claimed=MATSUMOTO, recipient=NAGANO, query={})
    assert is_channel_message(forged)


def test_a_request_to_a_municipality_the_tier_does_not_have_is_dead_lettered_not_retried(world: World) -> None:
    from jukinet.domain.codes import LocalGovernmentCode

    nowhere = LocalGovernmentCode.from_body("20999").value
    nagano = world.endpoint(NAGANO_PREF)
    correlation = nagano.request(NAGANO, nowhere, {"query": "resident-status", "resident_code": resident(41)})
    world.pump()
    assert [(d["jukinet.reason"], d["jukinet.field"]) for d in world.dead_letters("muni-200000")] == \
        [("unknown_recipient", "channel.to")]
    assert nagano.result(correlation).outcome is Outcome.PENDING
