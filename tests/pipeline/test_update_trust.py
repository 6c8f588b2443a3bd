"""Trust on the update path: each test is an attack by someone holding one municipality's or
one prefecture's rights, and what stops it (docs/security.md, "Threats on the update path")."""

from __future__ import annotations

import gzip
import hashlib
import json
import random

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys, Signer
from jukinet.adapters.queues import send_signed
from jukinet.domain.message import Origin, Payload, SignedMessage
from jukinet.domain.notice import UpdateNotice
from jukinet_ops.reconcile import TierTables, reconcile

from .exports import csv_bytes, person, row
from .harness import MUNICIPALITIES, PREFECTURE, utc

NAGANO, MATSUMOTO, UEDA = MUNICIPALITIES
CHIYODA = "131016"
MONTH = "2003-01"
NOW = utc(2003, 1, 20, 1, 0)


def stores(p) -> tuple[IdentityStore, IdentityStore]:
    pref = IdentityStore(p.pref_table, DataKeys(p.keys["data-prefecture"], {"tier": "prefecture", "prefecture": PREFECTURE}))
    nat = IdentityStore(p.national_table, DataKeys(p.keys["data-national"], {"tier": "national"}))
    return pref, nat


def recon(p, municipalities=(NAGANO, MATSUMOTO, UEDA), month=MONTH):
    rows = reconcile(TierTables("jukinet-cs-20", p.pref_table, p.national_table), {m: m for m in municipalities}, month)
    return {r.municipality: r for r in rows}


def drop_at(p, municipality, name, data, when=NOW):
    return p.drop(municipality, name, data, now=when)


def notice_dict(municipality: str, sequence: int, p: dict, reason: str, change_date: str,
                notice_time: str = "2003-01-20T01:00:00.000000Z") -> dict:
    deletion = reason in ("21", "22", "23")
    return {"municipality": municipality, "sequence": sequence, "resident_code": p["resident_code"], "reason": reason,
            "change_date": change_date, "notice_time": notice_time, "previous_resident_code": None,
            "facts": None if deletion else {
                "resident_code": p["resident_code"], "name": {"kanji": p["name_kanji"], "kana": p["name_kana"]},
                "birth_date": p["birth_date"], "sex": p["sex"], "address": p["address"]}}


def signed(pipeline, signer: str, notices: list[dict], sender: str | None = None) -> SignedMessage:
    """A message as someone holding ``signer``'s key (not going through its CS) would send it."""
    sender = sender or signer
    return Signer(pipeline.keys[f"sign-{signer}"], sender).sign(Payload(sender, "2003-01-20T01:00:00Z", notices))


def reason_of(dead: dict) -> tuple[str, str, str]:
    attrs = dead["MessageAttributes"]
    return tuple(attrs.get(f"jukinet.{k}", {}).get("StringValue", "") for k in ("reason", "field", "rule"))


def held_by_matsumoto(pipeline, seed: int) -> dict:
    p = person(random.Random(seed))
    drop_at(pipeline, MATSUMOTO, f"in-{seed}.csv", csv_bytes([row(p, "転入", "2003-01-06")]), when=utc(2003, 1, 7))
    pipeline.run()
    return p


def matsumoto_moves_them_a_month_later(pipeline, p: dict) -> None:
    moved = dict(p, address="長野県松本市丸の内3番7号")
    drop_at(pipeline, MATSUMOTO, "within.csv", csv_bytes([row(moved, "転居", "2003-02-15")]), when=utc(2003, 2, 16))
    pipeline.run()
    for store in stores(pipeline):
        current = store.current(p["resident_code"])
        assert (current.municipality, current.reason, current.facts.address) == (MATSUMOTO, "31", moved["address"])


# --- 1. a municipality changes only its own residents, within bounded dates ------------------

def test_death_dated_2999_is_refused_counted_and_never_current_and_the_holders_next_change_still_lands(pipeline):
    p = held_by_matsumoto(pipeline, 1)
    # Through Nagano's CS: the row is rejected there, reported, never sent.
    result = drop_at(pipeline, NAGANO, "typo.csv", csv_bytes([row(p, "死亡", "2999-12-31")]))
    assert (result["files"][0]["sent"], result["files"][0]["rejected"]) == (0, 1)
    # With Nagano's key, around its CS: dead-lettered with the reason, counted against Nagano.
    send_signed(pipeline.pref_queue, [signed(pipeline, NAGANO, [notice_dict(NAGANO, 1, p, "22", "2999-12-31")])])
    pipeline.run()
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("invalid_notice", "change_date", "future")
    assert recon(pipeline)[NAGANO].dead_lettered_prefecture == 1
    for store in stores(pipeline):
        assert store.current(p["resident_code"]).status == "active"
    matsumoto_moves_them_a_month_later(pipeline, p)


def test_municipality_cannot_record_the_death_of_a_resident_another_municipality_holds(pipeline):
    p = held_by_matsumoto(pipeline, 2)
    drop_at(pipeline, NAGANO, "death.csv", csv_bytes([row(p, "死亡", "2003-01-19")]))
    pipeline.run()
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("not_holder", "municipality", "holder")
    r = recon(pipeline)[NAGANO]
    assert (r.sent, r.stored_prefecture, r.dead_lettered_prefecture, r.stored_national) == (1, 0, 1, 0)
    assert r.balanced
    for store in stores(pipeline):
        assert store.current(p["resident_code"]).status == "active"
        assert [h.municipality for h in store.history(p["resident_code"])] == [MATSUMOTO]
    matsumoto_moves_them_a_month_later(pipeline, p)


def test_municipality_cannot_change_a_resident_of_another_prefecture_at_the_national_tier(pipeline):
    p = person(random.Random(3))
    _, nat = stores(pipeline)
    nat.apply([UpdateNotice.from_dict(notice_dict(CHIYODA, 1, p, "11", "2003-01-02", "2003-01-03T00:00:00Z"))], now=NOW)
    # Nagano's prefecture does not know the Tokyo resident; the national tier does.
    drop_at(pipeline, NAGANO, "death.csv", csv_bytes([row(p, "死亡", "2003-01-19")]))
    pipeline.run()
    [dead] = pipeline.dead_letters("national")
    assert reason_of(dead) == ("not_holder", "municipality", "holder")
    current = nat.current(p["resident_code"])
    assert (current.status, current.municipality) == ("active", CHIYODA)
    r = recon(pipeline)[NAGANO]
    assert (r.stored_prefecture, r.stored_national, r.dead_lettered_national) == (1, 0, 1) and r.balanced


def test_notice_refused_at_the_prefecture_is_not_forwarded_and_both_tiers_balance(pipeline):
    p = held_by_matsumoto(pipeline, 4)
    q = person(random.Random(5))
    drop_at(pipeline, NAGANO, "mixed.csv", csv_bytes([row(q, "転入", "2003-01-10"), row(p, "死亡", "2003-01-19")]))
    pipeline.run()
    r = recon(pipeline)[NAGANO]
    assert (r.sent, r.stored_prefecture, r.dead_lettered_prefecture) == (2, 1, 1)
    assert (r.stored_national, r.dead_lettered_national) == (1, 0) and r.balanced
    assert pipeline.dead_letters("national") == []


# --- 2. lineage: the national tier checks each municipality's own signature ------------------

def test_history_records_the_municipality_signature_each_notice_was_accepted_under(pipeline):
    p = person(random.Random(6))
    drop_at(pipeline, NAGANO, "in.csv", csv_bytes([row(p, "転入", "2003-01-10")]))
    pipeline.run()
    for store in stores(pipeline):
        [entry] = store.history(p["resident_code"])
        under = entry.accepted_under
        # (the embedded KMS names a key by its id where AWS gives the ARN)
        assert under.signer == NAGANO and pipeline.keys[f"sign-{NAGANO}"].endswith(under.key_arn.split("/")[-1])
        # Anyone with Nagano's public key can check again that Nagano signed that digest.
        public = load_der_public_key(pipeline.kms.get_public_key(KeyId=under.key_arn)["PublicKey"])
        public.verify(under.signature, bytes.fromhex(under.digest), ec.ECDSA(hashes.SHA256()))


def test_prefecture_cannot_forge_notices_for_its_municipalities(pipeline):
    a, b, c = (person(random.Random(s)) for s in (7, 8, 9))
    pref_signer = Signer(pipeline.keys[f"sign-{PREFECTURE}"], PREFECTURE)  # the prefecture's own, genuine key
    # (i) re-signed bare notices, as every prefecture sent them before
    bare = pref_signer.sign(Payload(PREFECTURE, "2003-01-20T01:00:00Z", [notice_dict(NAGANO, 1, a, "11", "2003-01-10")]))
    # (ii) a payload claiming to be Nagano's, signed by the prefecture
    made_up = signed(pipeline, PREFECTURE, [notice_dict(NAGANO, 2, b, "11", "2003-01-10")], sender=NAGANO)
    # (iii) Matsumoto's genuine signature over a notice that names Nagano
    other = signed(pipeline, MATSUMOTO, [notice_dict(NAGANO, 3, c, "11", "2003-01-10")])
    wrapped = pref_signer.sign(Payload(PREFECTURE, "2003-01-20T01:00:00Z", [], (Origin(made_up), Origin(other))))
    send_signed(pipeline.national_queue, [bare, wrapped])
    pipeline.drain("national")
    reasons = sorted(reason_of(d) for d in pipeline.dead_letters("national"))
    assert reasons == [("invalid_notice", "municipality", "signer"), ("lineage_missing", "payload.origins", "lineage"),
                       ("origin_signature_invalid", "origin.sig", "signature")]
    _, nat = stores(pipeline)
    assert all(nat.current(x["resident_code"]) is None for x in (a, b, c))


# --- 3. dead-letter counts move only for verified senders ------------------------------------

def test_forged_dead_letter_claim_cannot_make_a_real_loss_look_balanced(pipeline):
    people = [person(random.Random(s)) for s in (10, 11)]
    drop_at(pipeline, MATSUMOTO, "two.csv", csv_bytes([row(x, "転入", "2003-01-10") for x in people]))
    [lost] = pipeline.sqs.receive_message(QueueUrl=pipeline.pref_queue)["Messages"]  # lost on the way
    pipeline.sqs.delete_message(QueueUrl=pipeline.pref_queue, ReceiptHandle=lost["ReceiptHandle"])
    # Someone without Matsumoto's key claims its two notices, badly signed: had they counted,
    # Matsumoto's row would read "sent 2 = dead-lettered 2" and the loss would be hidden.
    claims = [notice_dict(MATSUMOTO, i, x, "11", "2003-01-10") for i, x in enumerate(people, start=1)]
    send_signed(pipeline.pref_queue, [signed(pipeline, UEDA, claims, sender=MATSUMOTO)])
    pipeline.send_raw("prefecture", json.dumps({"v": 1, "sender": MATSUMOTO, "alg": "ECDSA_SHA_256", "payload": "e30=",
                                                 "sig": "AAAA"}))
    pipeline.run()
    r = recon(pipeline)[MATSUMOTO]
    assert (r.sent, r.stored_prefecture, r.dead_lettered_prefecture) == (2, 0, 0) and not r.balanced
    pref, _ = stores(pipeline)
    assert sum(dict(pref.ledger("unknown").dead).values()) == 3


def test_verified_municipality_cannot_count_its_dead_letters_against_another(pipeline):
    p = person(random.Random(12))
    send_signed(pipeline.pref_queue, [signed(pipeline, NAGANO, [notice_dict(MATSUMOTO, 5, p, "11", "2003-01-10")])])
    pipeline.run()
    rows = recon(pipeline)
    assert rows[MATSUMOTO].dead_lettered_prefecture == 0 and rows[MATSUMOTO].gaps_prefecture == []
    assert rows[NAGANO].dead_lettered_prefecture == 1


# --- 4. bounds before parsing; every failure has a reason ------------------------------------

def test_deeply_nested_envelope_is_dead_lettered_with_a_reason_not_retried(pipeline):
    pipeline.send_raw("prefecture", '{"v":1,"sender":"202011","x":' + "[" * 100_000 + "]" * 100_000 + "}")
    [response] = pipeline.drain("prefecture")
    assert response["batchItemFailures"] == []
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("malformed_envelope", "envelope", "depth")
    pref, _ = stores(pipeline)
    assert sum(dict(pref.ledger("unknown").dead).values()) == 1


def test_deeply_nested_payload_signed_by_a_municipality_is_dead_lettered_with_a_reason(pipeline):
    data = gzip.compress(b'{"sender":"202011","count":1,"notices":[' + b"[" * 50_000 + b"]" * 50_000 + b"]}")
    signature = pipeline.kms.sign(KeyId=pipeline.keys[f"sign-{NAGANO}"], Message=hashlib.sha256(data).digest(),
                                  MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    send_signed(pipeline.pref_queue, [SignedMessage(NAGANO, "k", data, signature)])
    [response] = pipeline.drain("prefecture")
    assert response["batchItemFailures"] == []
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("malformed_payload", "payload", "depth")
    pref, _ = stores(pipeline)
    assert sum(dict(pref.ledger(NAGANO).dead).values()) == 1


def test_too_many_notices_in_one_message_are_refused_by_count(pipeline):
    p = person(random.Random(13))
    notices = [notice_dict(NAGANO, i, p, "31", "2003-01-10") for i in range(1, 1002)]
    send_signed(pipeline.pref_queue, [signed(pipeline, NAGANO, notices)])
    pipeline.run()
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("malformed_payload", "payload.notices", "count")


def test_legitimate_moves_between_municipalities_still_flow_to_both_tiers(pipeline):
    p = person(random.Random(14))
    drop_at(pipeline, NAGANO, "birth.csv", csv_bytes([row(p, "転入", "2003-01-02")]), when=utc(2003, 1, 3))
    pipeline.run()
    drop_at(pipeline, MATSUMOTO, "in.csv", csv_bytes([row(p, "転入", "2003-01-10")]), when=utc(2003, 1, 11))
    pipeline.run()
    drop_at(pipeline, NAGANO, "out.csv", csv_bytes([row(p, "転出", "2003-01-09")]), when=utc(2003, 1, 12))
    pipeline.run()
    matsumoto_moves_them_a_month_later(pipeline, p)
    assert pipeline.dead_letters("prefecture") == [] and pipeline.dead_letters("national") == []


# --- 6. senders pinned to their key's ARN, not trusted by alias ------------------------------

def test_re_pointed_alias_does_not_change_which_key_verifies_a_sender(pipeline):
    from jukinet.handlers import prefecture_processor

    first, second, forged_person = (person(random.Random(s)) for s in (20, 21, 22))
    drop_at(pipeline, NAGANO, "1.csv", csv_bytes([row(first, "転入", "2003-01-10")]))
    pipeline.run()  # the first message pins Nagano to its key
    # Someone with key administration re-points Nagano's alias to a key they can sign with.
    rogue = pipeline.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    pipeline.kms.update_alias(AliasName="alias/jukinet/signing/" + NAGANO, TargetKeyId=rogue)
    prefecture_processor._runtime.cache_clear()  # a cold start: nothing cached any more
    forged = Signer(rogue, NAGANO).sign(Payload(NAGANO, "2003-01-20T01:00:00Z",
                                               [notice_dict(NAGANO, 2, forged_person, "11", "2003-01-10")]))
    send_signed(pipeline.pref_queue, [forged])
    pipeline.run()
    [dead] = pipeline.dead_letters("prefecture")
    assert reason_of(dead) == ("signature_invalid", "envelope.sig", "signature")
    pref, _ = stores(pipeline)
    assert pref.current(forged_person["resident_code"]) is None
    # Nagano's own key still works (its CS signs by key ARN, not alias).
    drop_at(pipeline, NAGANO, "2.csv", csv_bytes([row(second, "転入", "2003-01-11")]))
    pipeline.run()
    assert pref.current(second["resident_code"]) is not None
