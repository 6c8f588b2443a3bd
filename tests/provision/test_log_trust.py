"""Trust in the provision log, tried as an attacker with the writers' rights would (issue 12,
items 1–6 and 9). Each test is the attack: it succeeded on the code before the hourly chained
seals, the pinned key, the archive and the disclosure scope, and fails now.

Tampering is done directly in the tables (moto does not evaluate IAM; the policies that stop
the writers from writing ``expires_at`` or any ``SEAL*`` item are asserted in
``tests/infra/test_provision.py``). DynamoDB's TTL is played by ``ttl_sweep``: it deletes every
item whose ``expires_at`` has passed, as the service would.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from jukinet.adapters.provision_log import SealArchive
from jukinet.domain.notice import JST
from jukinet.domain.provision import (
    GENESIS,
    entry_ref,
    link,
    manifest_digest,
    retention_expiry,
    seal_message,
)
from jukinet.domain.provision import RefusalCode
from jukinet.services.provision_audit import SealChainBroken
from jukinet_ops.provision import verify_log

DAY = "2026-11-26"  # world.now: 2026-11-26 12:00 JST
FIRST = f"{DAY}T00"
NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)  # every hour of DAY is due for its seal


@pytest.fixture
def codes(world) -> list[str]:
    residents = world.add_residents(3, seed=5)
    codes = [r.code for r in residents]
    for affair in ["PAY", "ALIVE"]:
        status, body = world.call("POST", "/v1/lookups", {"affair_code": affair, "resident_codes": codes})
        assert status == 200, body
    return codes


def check(world, days=(DAY,), residents=(), now=LATER, archive=True):
    return verify_log(world.log(), list(days), list(residents), world.public_key(), now=now,
                      archive=SealArchive(world.seal_archive) if archive else None)


def kinds(report) -> set[tuple[str, str]]:
    return {(p.where, p.kind) for p in report.problems}


def _key(code: str, n: int) -> dict:
    return {"pk": {"S": f"P#{code}"}, "sk": {"S": f"E#{n:08d}"}}


def rewrite_chain(world, code: str) -> None:
    """A chain rewritten consistently (new recipient, every hash and prev recomputed, head too):
    no chain check can fault it."""
    entries, _ = world.log().chain(code)
    prev = GENESIS
    for e in entries:
        item = world.ddb.get_item(TableName=world.log_table, Key=_key(code, e.n))["Item"]
        content = {**e.content, "recipient_id": "fsa", "recipient_name": "金融庁"}
        new = link(content, e.n, prev)
        world.ddb.put_item(TableName=world.log_table, Item={
            **item, "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)},
            "prev": {"S": prev}, "hash": {"S": new.hash}})
        prev = new.hash
    world.ddb.put_item(TableName=world.state_table, Item={
        "pk": {"S": f"HEAD#{code}"}, "sk": {"S": "HEAD"}, "n": {"N": str(len(entries))}, "hash": {"S": prev}})


def ttl_sweep(world, now: dt.datetime) -> int:
    """DynamoDB TTL: delete every item of the log whose ``expires_at`` is past."""
    removed = 0
    for page in world.ddb.get_paginator("scan").paginate(TableName=world.log_table):
        for item in page["Items"]:
            if "expires_at" in item and int(item["expires_at"]["N"]) <= now.timestamp():
                world.ddb.delete_item(TableName=world.log_table, Key={"pk": item["pk"], "sk": item["sk"]})
                removed += 1
    return removed


# --- 1. the verifier pins the deployment's key ---------------------------------------------------


def test_a_day_resealed_with_an_attackers_key_named_in_the_seal_is_seal_invalid(world, codes):
    world.seal(DAY)
    rewrite_chain(world, codes[0])
    # Rebuild the manifest of the day's first hour from the rewritten table and sign it with
    # the attacker's own KMS key, whose ARN goes into the seal.
    log = world.log()
    refs = log.day_hashes(DAY)
    seal_item = world.ddb.get_item(TableName=world.log_table, Key={"pk": {"S": "SEALS"}, "sk": {"S": FIRST}})["Item"]
    digest = manifest_digest(FIRST, list(refs.items()))
    own = world.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    signature = world.kms.sign(KeyId=own, Message=seal_message(FIRST, len(refs), digest, seal_item["prev"]["S"]),
                               MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    body = gzip.compress("".join(f"{r}:{h}\n" for r, h in sorted(refs.items())).encode(), mtime=0)
    world.ddb.put_item(TableName=world.log_table, Item={
        "pk": {"S": f"SEAL#{FIRST}"}, "sk": {"S": "PART#00000"}, "refs": {"B": body}})
    world.ddb.put_item(TableName=world.log_table, Item={
        **seal_item, "digest": {"S": digest}, "signature": {"B": signature}, "key_id": {"S": own}})

    report = check(world, residents=[codes[0]], archive=False)
    assert (FIRST, "seal_invalid") in kinds(report)
    assert not report.ok
    status, body = world.call("GET", f"/v1/disclosures/{codes[0]}", who="pref-disclosure")
    assert status == 200 and body["chain"]["verified"] is False


# --- 2. TTL is not a delete; seals are chained; the head is a hint ---------------------------------


def test_writers_write_no_expiry_the_sealer_derives_it_from_the_sealed_day(world, codes):
    item = world.ddb.get_item(TableName=world.log_table, Key=_key(codes[0], 1))["Item"]
    assert "expires_at" not in item
    world.seal(DAY)
    item = world.ddb.get_item(TableName=world.log_table, Key=_key(codes[0], 1))["Item"]
    assert int(item["expires_at"]["N"]) == retention_expiry(DAY)
    assert retention_expiry(DAY) == int(dt.datetime(2033, 11, 27, tzinfo=JST).timestamp())


def test_entries_expired_early_by_a_writer_with_a_rewound_head_are_named_removed(world, codes):
    world.seal(DAY)
    victim = codes[1]
    # A writer's PutItem sets the expiry of the resident's last entry in the past; TTL deletes
    # it; the head hint is rewound so the chain looks complete.
    item = world.ddb.get_item(TableName=world.log_table, Key=_key(victim, 2))["Item"]
    world.ddb.put_item(TableName=world.log_table, Item={**item, "expires_at": {"N": "1"}})
    assert ttl_sweep(world, LATER) == 1
    first = world.ddb.get_item(TableName=world.log_table, Key=_key(victim, 1))["Item"]
    world.ddb.put_item(TableName=world.state_table, Item={
        "pk": {"S": f"HEAD#{victim}"}, "sk": {"S": "HEAD"}, "n": {"N": "1"}, "hash": first["hash"]})

    report = check(world, days=[], residents=[victim])
    assert kinds(report) == {(entry_ref(victim, 2), "removed")}
    status, body = world.call("GET", f"/v1/disclosures/{victim}", who="pref-disclosure")
    assert status == 200 and body["chain"]["verified"] is False


def test_a_day_whose_seals_and_entries_were_removed_does_not_read_no_entries(world, codes):
    world.seal(DAY)
    world.seal("2026-11-27")
    for code in codes:
        for n in (1, 2):
            world.ddb.delete_item(TableName=world.log_table, Key=_key(code, n))
    for hour in range(24):
        world.ddb.delete_item(TableName=world.log_table, Key={"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T{hour:02d}"}})
    report = check(world, days=[DAY], now=LATER + dt.timedelta(days=1))
    assert report.days[0].status != "no entries"
    assert {(f"{DAY}T{h:02d}", "seal_missing") for h in range(24)} <= kinds(report)
    # Without the archive too: the table's first seal links to one that is gone.
    report = check(world, days=["2026-11-27"], now=LATER + dt.timedelta(days=1), archive=False)
    assert (f"{DAY}T23", "seal_missing") in kinds(report)


def test_a_removed_hourly_seal_breaks_the_seal_chain(world, codes):
    world.seal(DAY)
    world.ddb.delete_item(TableName=world.log_table, Key={"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T07"}})
    report = check(world)
    assert (f"{DAY}T07", "seal_missing") in kinds(report)
    assert "the seal archive holds it" in next(p.detail for p in report.problems if p.where == f"{DAY}T07")


def test_a_seal_given_another_hours_signature_is_seal_invalid(world, codes):
    world.seal(DAY)
    key = {"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T05"}}
    item = world.ddb.get_item(TableName=world.log_table, Key=key)["Item"]
    # Re-signing with the real key needs the sealer's role; borrowing the valid signature of
    # another hour of the same chain does not fit this hour's message.
    other = world.ddb.get_item(TableName=world.log_table, Key={"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T06"}})["Item"]
    world.ddb.put_item(TableName=world.log_table, Item={**item, "signature": other["signature"]})
    assert (f"{DAY}T05", "seal_invalid") in kinds(check(world))


def test_the_sealer_takes_the_archive_not_the_table_as_where_the_chain_ends(world, codes):
    world.seal(DAY)
    # The table's last seals are removed (a rewound chain head): the sealer restores them from
    # the archive instead of re-sealing the hours with what the table now holds.
    for hour in (22, 23):
        world.ddb.delete_item(TableName=world.log_table, Key={"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T{hour:02d}"}})
    result = world.seal("2026-11-27")
    assert result["seals"] == 24
    assert world.log().seal(f"{DAY}T23") is not None
    assert check(world, days=[DAY, "2026-11-27"], now=LATER + dt.timedelta(days=1)).ok
    # A table whose last seal is not the archived one stops the sealer.
    key = {"pk": {"S": "SEALS"}, "sk": {"S": "2026-11-27T23"}}
    item = world.ddb.get_item(TableName=world.log_table, Key=key)["Item"]
    world.ddb.put_item(TableName=world.log_table, Item={**item, "digest": {"S": "0" * 64}})
    with pytest.raises(SealChainBroken):
        world.seal("2026-11-28", at=LATER + dt.timedelta(days=2))


def test_the_seal_archive_keeps_every_seal_under_object_lock(world, codes):
    world.seal(DAY)
    head = world.s3.head_object(Bucket=world.seal_archive, Key=f"seals/{FIRST}.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    doc = json.loads(world.s3.get_object(Bucket=world.seal_archive, Key=f"seals/{FIRST}.json")["Body"].read())
    assert doc["prev"] == GENESIS and len(doc["refs"]) == 6
    with pytest.raises(Exception, match="AccessDenied|locked|retention"):
        world.s3.delete_object(Bucket=world.seal_archive, Key=f"seals/{FIRST}.json", VersionId=head["VersionId"])


# --- 3. after seven years the log still verifies ---------------------------------------------------


def test_after_seven_years_the_log_still_verifies_past_its_expired_entries(world, codes):
    world.seal(DAY)
    # Provisions again the next day, sealed: each chain goes on after DAY's entries.
    world.now = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": codes})
    assert status == 200
    world.seal("2026-11-27", at=world.now + dt.timedelta(days=1))
    # The clock moves seven years on: DAY's entries have expired (from 2033-11-27 00:00 JST), the
    # next day's not yet; DynamoDB's TTL deletes what the sealer gave an expiry.
    later = dt.datetime(2033, 11, 27, 6, 0, tzinfo=dt.UTC)
    assert ttl_sweep(world, later) >= 6
    report = check(world, days=[DAY, "2026-11-27"], residents=codes, now=later)
    assert report.ok, report.problems
    assert report.days[0].status == "past retention (7 years): expired"
    assert report.days[1].status == "verified against the seal"
    # The same removal a day before the seven years are up is a removal.
    early = check(world, days=["2026-11-27"], residents=codes, now=later - dt.timedelta(days=1))
    assert {(entry_ref(codes[0], n), "removed") for n in (1, 2)} <= kinds(early)


# --- 4. the unsealed window is an hour -----------------------------------------------------------


def test_a_chain_rewritten_an_hour_after_the_provision_is_caught_by_the_hourly_seal(world, codes):
    world.seal(at=dt.datetime(2026, 11, 26, 4, 15, tzinfo=dt.UTC))  # the scheduled run at 13:15 JST
    assert world.log().seal(f"{DAY}T12") is not None
    rewrite_chain(world, codes[2])
    report = check(world, residents=[codes[2]], now=dt.datetime(2026, 11, 26, 4, 20, tzinfo=dt.UTC))
    assert {(entry_ref(codes[2], n), "edited") for n in (1, 2)} <= kinds(report)


# --- 5. the sealer's metric --------------------------------------------------------------------------


def test_the_sealer_reports_every_run_even_with_nothing_to_seal(world, codes, capfd):
    at = dt.datetime(2026, 11, 26, 4, 15, tzinfo=dt.UTC)
    assert world.seal(at=at)["seals"] == 1
    assert world.seal(at=at)["seals"] == 0
    docs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    sealed = [d["ProvisionLogSealed"] for d in docs if "ProvisionLogSealed" in d]
    assert sealed == [[1.0], [0.0]]


# --- 6. the disclosure checks the seals and says what is not sealed yet ------------------------------


def test_the_disclosure_checks_the_seals_not_only_the_chain(world, codes):
    world.seal(DAY)
    rewrite_chain(world, codes[0])  # a chain no chain check can fault
    status, body = world.call("GET", f"/v1/disclosures/{codes[0]}", who="pref-disclosure")
    assert status == 200
    assert body["chain"]["verified"] is False
    assert any("edited" in p for p in body["chain"]["problems"])


def test_the_disclosure_names_the_days_not_sealed_yet(world, codes):
    status, body = world.call("GET", f"/v1/disclosures/{codes[1]}", who="pref-disclosure")
    assert status == 200 and body["chain"]["verified"] is True
    assert body["chain"]["unsealed_days"] == [DAY]
    world.seal(DAY)
    _, body = world.call("GET", f"/v1/disclosures/{codes[1]}", who="pref-disclosure")
    assert body["chain"]["unsealed_days"] == []


# --- 9. disclosure staff: their prefecture's residents, and every disclosure recorded ---------------


def test_disclosure_staff_cannot_read_a_resident_of_another_prefecture(world):
    tokyo = world.add_residents(1, seed=9, municipality="131016")[0]
    world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [tokyo.code]})
    status, body = world.call("GET", f"/v1/disclosures/{tokyo.code}", who="pref-disclosure")
    assert status == 403 and body["error"]["code"] == RefusalCode.DISCLOSURE_NOT_PERMITTED.name
    assert body["error"]["field"] == "resident_code"
    unknown_status, unknown = world.call("GET", "/v1/disclosures/50000000016", who="pref-disclosure")
    same = ("code", "message", "field", "rule")
    assert unknown_status == status  # nothing told apart
    assert [unknown["error"][k] for k in same] == [body["error"][k] for k in same]


def test_every_disclosure_is_recorded_where_the_next_disclosure_and_the_audit_see_it(world, codes):
    status, first = world.call("GET", f"/v1/disclosures/{codes[0]}", who="pref-disclosure")
    assert status == 200 and first["disclosures"] == []
    status, second = world.call("GET", f"/v1/disclosures/{codes[0]}", who="pref-disclosure")
    assert [(d["office"], d["staff"], d["date"]) for d in second["disclosures"]] == [
        ("pref", "arn:aws:sts::123456789012:assumed-role/pref-disclosure/session-1", DAY)]
    assert len(second["provisions"]) == 2  # a disclosure is not a provision
    # The record is an entry of the resident's chain: sealed and checked like a provision.
    world.seal(DAY)
    entries, _ = world.log().chain(codes[0])
    assert [e.content.get("kind") for e in entries] == [None, None, "disclosure", "disclosure"]
    assert check(world, residents=[codes[0]]).ok
