"""``jukinet redrive`` on the in-process pipeline (moto): dead letters go back to their queue
once the cause is fixed, and the reconciliation counts each notice once — stored, or
dead-lettered — never both (jukinet_ops/redrive.py, IdentityStore.release_dead_letters)."""

from __future__ import annotations

import json
import random

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.adapters.identity_store import IdentityStore, ledger_attributes, ledger_from_item
from jukinet.adapters.queues import send_signed
from jukinet.clock import fixed
from jukinet.domain.ledger import Ledger
from jukinet.services.tier_processor import REDRIVE_ATTRIBUTE, UNKNOWN_SENDER, PermanentFailure, TierProcessor
from jukinet_ops.redrive import NO_REASON, Redrive, RedriveRecord

from .exports import csv_bytes, person, row
from .harness import ALIAS_PREFIX, REGION, utc
from .test_update_trust import MONTH, NAGANO, UEDA, drop_at, notice_dict, recon, signed, stores

PREF = "pref-200000"


def redrive(pipeline, *, reasons=(), apply=False, when=utc(2003, 1, 21, 3, 0)):
    tool = Redrive(_deployment(), clients=lambda s: boto3.client(s, region_name=REGION), clock=fixed(when),
                   queue_urls={PREF: (pipeline.pref_dlq, pipeline.pref_queue),
                               "national": (pipeline.national_dlq, pipeline.national_queue)})
    [report] = tool.run(tiers=[PREF], reasons=reasons, apply=apply)
    return tool, report


def _deployment():
    from infra.config import load_deployment

    return load_deployment("nagano-demo")


def faulty_release(monkeypatch):
    """A processor release whose payload check refuses valid payloads (the bug the fix removes)."""
    def refuse(message, where="payload"):
        raise PermanentFailure("malformed_payload", "a release too strict about payloads", where, "format")

    monkeypatch.setattr(TierProcessor, "_payload", staticmethod(refuse))


def _people(n, seed):
    rng = random.Random(seed)
    return [person(rng) for _ in range(n)]


def test_a_redriven_message_counted_against_its_municipality_counts_once_as_stored(pipeline, monkeypatch):
    """A processor release refused valid messages (a bound set too low): they were counted as
    Nagano's dead letters. Fixed and redriven, they are stored — and no longer dead-lettered."""
    drop_at(pipeline, NAGANO, "two.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(2, 1)]))
    faulty_release(monkeypatch)
    pipeline.run()
    before = recon(pipeline)[NAGANO]
    assert (before.sent, before.stored_prefecture, before.dead_lettered_prefecture) == (2, 0, 2)

    monkeypatch.undo()  # the fix is deployed
    _, dry = redrive(pipeline)
    assert dry.redrivable == {"malformed_payload": 1} and dry.moved == {} and dry.record is None
    assert recon(pipeline)[NAGANO].stored_prefecture == 0, "a dry run moves nothing"

    tool, done = redrive(pipeline, apply=True)
    assert done.moved == {"malformed_payload": 1}
    pipeline.run()
    after = recon(pipeline)[NAGANO]
    assert (after.sent, after.stored_prefecture, after.dead_lettered_prefecture) == (2, 2, 0)
    assert (after.stored_national, after.dead_lettered_national) == (2, 0)
    assert after.balanced, after.problems
    pref, _ = stores(pipeline)
    assert pref.ledger(NAGANO).redriven_in(MONTH) == 2
    assert pipeline.dead_letters("prefecture") == []


def test_a_message_from_a_sender_whose_key_was_not_yet_found_is_stored_after_the_fix(pipeline):
    """Ueda's signing-key alias was missing (unknown_sender): counted under ``unknown``, Ueda's
    row showed the loss. Alias created, message redriven: stored, and ``unknown`` is empty again."""
    pipeline.kms.delete_alias(AliasName=ALIAS_PREFIX + UEDA)
    drop_at(pipeline, UEDA, "one.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(1, 2)]))
    pipeline.run()
    assert not recon(pipeline)[UEDA].balanced
    pref, _ = stores(pipeline)
    assert pref.ledger(UNKNOWN_SENDER).dead_in(MONTH) == 1

    pipeline.kms.create_alias(AliasName=ALIAS_PREFIX + UEDA, TargetKeyId=pipeline.keys[f"sign-{UEDA}"])
    _, done = redrive(pipeline, reasons=["unknown_sender"], apply=True)
    assert done.moved == {"unknown_sender": 1} and done.senders == {"unknown_sender": [UEDA]}
    pipeline.run()
    r = recon(pipeline)[UEDA]
    assert r.balanced and (r.sent, r.stored_prefecture, r.stored_national) == (1, 1, 1), r.problems
    assert pref.ledger(UNKNOWN_SENDER).dead_in(MONTH) == 0


def test_a_message_sqs_moved_after_failed_receives_is_redriven_and_stored(pipeline, monkeypatch):
    """A processing failure (no reason: SQS moved it after five receives) was never counted;
    redriven with ``--reason none`` it is stored and the row balances."""
    drop_at(pipeline, NAGANO, "one.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(1, 3)]))

    def outage(*args, **kwargs):
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(IdentityStore, "apply", outage)
    pipeline.drain("prefecture")
    monkeypatch.undo()
    assert not recon(pipeline)[NAGANO].balanced
    _, done = redrive(pipeline, reasons=[NO_REASON], apply=True)
    assert done.moved == {NO_REASON: 1}
    pipeline.run()
    assert recon(pipeline)[NAGANO].balanced, recon(pipeline)[NAGANO].problems


def test_a_redriven_message_that_fails_again_is_counted_once_and_goes_back_to_the_dlq(pipeline, monkeypatch):
    drop_at(pipeline, NAGANO, "two.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(2, 4)]))
    faulty_release(monkeypatch)
    pipeline.run()
    _, done = redrive(pipeline, apply=True)  # the cause is NOT fixed
    pipeline.run()
    r = recon(pipeline)[NAGANO]
    assert (r.sent, r.stored_prefecture, r.dead_lettered_prefecture) == (2, 0, 2) and r.balanced
    assert done.moved == {"malformed_payload": 1}
    assert len(pipeline.dead_letters("prefecture")) == 1


def test_dry_run_counts_per_reason_releases_everything_and_leaves_notice_fragments(pipeline):
    """A notice cut out of a message (invalid_notice) is not a message its sender signed: it is
    counted but never moved; ``--reason`` selects; a dry run leaves every dead letter visible."""
    good, bad = _people(2, 5)
    send_signed(pipeline.pref_queue, [signed(pipeline, NAGANO, [
        notice_dict(NAGANO, 1, good, "11", "2003-01-10"), notice_dict(NAGANO, 2, bad, "11", "2999-12-31")])])
    pipeline.send_raw("prefecture", json.dumps({"v": 1, "sender": UEDA, "alg": "ECDSA_SHA_256", "payload": "e30=",
                                                 "sig": "AAAA"}))
    pipeline.run()
    _, dry = redrive(pipeline)
    assert dry.fragments == {"invalid_notice": 1}
    assert dry.redrivable == {} and dry.not_selected == {"signature_invalid": 1}, "a forgery moves only when named"
    _, named = redrive(pipeline, reasons=["signature_invalid"])
    assert named.redrivable == {"signature_invalid": 1}
    _, filtered = redrive(pipeline, reasons=["unknown_sender"], apply=True)
    assert filtered.moved == {} and filtered.not_selected == {"signature_invalid": 1} and filtered.record is None
    assert len(pipeline.dead_letters("prefecture")) == 2, "nothing moved, everything visible again"


def test_each_applied_redrive_is_recorded_with_who_when_queue_reason_and_count(pipeline, monkeypatch):
    drop_at(pipeline, NAGANO, "two.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(2, 6)]))
    faulty_release(monkeypatch)
    pipeline.run()
    monkeypatch.undo()
    tool, done = redrive(pipeline, apply=True, when=utc(2003, 1, 21, 3, 4, 5))
    assert done.record == f"/jukinet/redrive/{PREF}/20030121T030405Z"
    [record] = tool.records(PREF)
    assert isinstance(record, RedriveRecord)
    assert record.requested_by.startswith("arn:aws:")
    assert (record.started_at, record.status) == ("2003-01-21T03:04:05Z", "done")
    assert (record.dead_letter_queue, record.source_queue) == ("jukinet-pref-200000-dlq", "jukinet-pref-200000-inbound")
    assert record.planned == record.moved == {"malformed_payload": 1}


def test_a_redrive_attribute_on_a_message_never_dead_lettered_releases_nothing(pipeline, monkeypatch):
    """The attribute only makes the processor look for this content's own dead-letter markers:
    a sender (or operator) setting it on another message cannot erase someone's dead letters."""
    drop_at(pipeline, NAGANO, "two.csv", csv_bytes([row(p, "転入", "2003-01-10") for p in _people(2, 7)]))
    faulty_release(monkeypatch)
    pipeline.run()
    monkeypatch.undo()
    other = signed(pipeline, NAGANO, [notice_dict(NAGANO, 3, _people(1, 8)[0], "11", "2003-01-10")])
    pipeline.sqs.send_message(QueueUrl=pipeline.pref_queue, MessageBody=other.to_body(),
                              MessageAttributes={REDRIVE_ATTRIBUTE: {"DataType": "String", "StringValue": "x"}})
    pipeline.run()
    r = recon(pipeline)[NAGANO]
    assert (r.stored_prefecture, r.dead_lettered_prefecture) == (1, 2)


@given(dead=st.dictionaries(st.sampled_from(["2003-01", "2003-02"]), st.integers(0, 50)),
       released=st.lists(st.tuples(st.sampled_from(["2003-01", "2003-02"]), st.integers(1, 10)), max_size=5))
def test_releasing_dead_letters_moves_counts_from_dead_to_redriven_and_survives_storage(dead, released) -> None:
    ledger = Ledger(dead=tuple(sorted(dead.items())))
    for month, count in released:
        ledger = ledger.release_dead(month, min(count, ledger.dead_in(month)))
    for month in ("2003-01", "2003-02"):
        assert ledger.dead_in(month) + ledger.redriven_in(month) == dead.get(month, 0)
    assert ledger_from_item({"pk": {"S": "x"}, **ledger_attributes(ledger)}) == ledger


@pytest.mark.parametrize("attrs", [{}, {"redriven": {"S": "{}"}}])
def test_a_ledger_written_before_redrive_existed_reads_as_never_redriven(attrs) -> None:
    item = {"version": {"N": "3"}, "runs": {"S": "[[1,2]]"}, "stored": {"S": '{"2003-01":2}'},
            "dead": {"S": '{"2003-01":1}'}, **attrs}
    assert ledger_from_item(item).redriven_in("2003-01") == 0
