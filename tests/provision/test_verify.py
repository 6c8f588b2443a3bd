"""``jukinet verify`` against a tampered provision log (moto world).

Provisions are made through the API handler; tampering is done directly in the DynamoDB table
(as someone who can write the table would); verification must name exactly the tampered
entries — by ``<resident code>#<n:08d>`` and kind — and nothing else.

Two cases:

- **not sealed yet**: only the residents' hash chains can be checked (edited / removed /
  reordered);
- **sealed**: the day is checked against the KMS-signed manifest, which also catches entries
  inserted or chains rewritten consistently.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jukinet.adapters.provision_log import SealArchive
from jukinet.domain.notice import JST
from jukinet.domain.provision import GENESIS, day_shard, entry_ref, link, seal_message
from jukinet_ops.provision import verify_log

DAY = "2026-11-26"  # world.now is 2026-11-26 03:00Z = 12:00 JST
AFFAIRS = ["PAY", "ALIVE", "PAY", "ALIVE"]  # four look-ups: every resident's chain has entries 1..4


@pytest.fixture
def codes(world) -> list[str]:
    residents = world.add_residents(4, seed=7)
    codes = [r.code for r in residents]
    for affair in AFFAIRS:
        status, body = world.call("POST", "/v1/lookups", {"affair_code": affair, "resident_codes": codes})
        assert status == 200, body
    return codes


@pytest.fixture
def sealed(world, codes) -> list[str]:
    assert world.seal(DAY)["entries"] == len(codes) * len(AFFAIRS)
    return codes


# --- the table, as an attacker sees it -------------------------------------------------


def _key(code: str, n: int) -> dict:
    return {"pk": {"S": f"P#{code}"}, "sk": {"S": f"E#{n:08d}"}}


def get(world, code: str, n: int) -> dict:
    return world.ddb.get_item(TableName=world.log_table, Key=_key(code, n))["Item"]


def put(world, item: dict) -> None:
    world.ddb.put_item(TableName=world.log_table, Item=item)


def delete(world, code: str, n: int) -> None:
    world.ddb.delete_item(TableName=world.log_table, Key=_key(code, n))


def content_of(item: dict) -> dict:
    return json.loads(item["content"]["S"])


def with_content(item: dict, content: dict) -> dict:
    return {**item, "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)}}


def edit_recipient(world, code: str, n: int) -> None:
    item = get(world, code, n)
    put(world, with_content(item, {**content_of(item), "recipient_id": "fsa", "recipient_name": "金融庁"}))


def swap(world, code: str, a: int, b: int) -> None:
    """Put each entry's attributes under the other's sort key."""
    item_a, item_b = get(world, code, a), get(world, code, b)
    put(world, {**item_b, **_key(code, a)})
    put(world, {**item_a, **_key(code, b)})


def forge_entry(world, code: str, n: int, prev: str, template_code: str | None = None) -> str:
    """A well-formed entry dated DAY at position ``n`` linked to ``prev``, its content modelled
    on a real entry (of ``template_code``, default ``code``); returns its hash."""
    template = content_of(get(world, template_code or code, 1))
    content = {**template, "resident_code": code, "provision_id": "P-20261126130000-0123456789abcdef",
               "at": "2026-11-26T04:00:00.000Z", "recipient_id": "fsa", "recipient_name": "金融庁"}
    entry = link(content, n, prev)
    put(world, {**_key(code, n), "n": {"N": str(n)}, "prev": {"S": prev}, "hash": {"S": entry.hash},
                "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)},
                "day_shard": {"S": day_shard(code, DAY)}, "entry_ref": {"S": entry_ref(code, n)},
                "expires_at": {"N": "2016586800"}})
    return entry.hash


def rewrite_chain(world, code: str) -> int:
    """Change the recipient of every entry and recompute every hash and prev with the domain's
    own functions, and the head too: a chain no chain check can fault. Returns its length."""
    entries, _ = world.log().chain(code)
    prev = GENESIS
    for e in entries:
        item = get(world, code, e.n)
        content = {**e.content, "recipient_id": "fsa", "recipient_name": "金融庁"}
        new = link(content, e.n, prev)
        put(world, {**with_content(item, content), "prev": {"S": prev}, "hash": {"S": new.hash}})
        prev = new.hash
    world.ddb.put_item(TableName=world.state_table, Item={
        "pk": {"S": f"HEAD#{code}"}, "sk": {"S": "HEAD"}, "n": {"N": str(len(entries))}, "hash": {"S": prev}})
    return len(entries)


def ref(code: str, n: int) -> str:
    return entry_ref(code, n)


# --- what verify finds -----------------------------------------------------------------


NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)  # world.now: 12:00 JST on DAY
FIRST = f"{DAY}T00"  # the operator's catch-up (world.seal(DAY)) seals every entry of DAY in the day's first hour


def check(world, days=(DAY,), residents=(), now=NOW):
    return verify_log(world.log(), list(days), list(residents), world.public_key(), now=now,
                      archive=SealArchive(world.seal_archive))


def found(world, days=(DAY,), residents=(), now=NOW) -> list[tuple[str, str]]:
    """Every problem verify reports (and prints), as (where, kind)."""
    report = check(world, days, residents, now)
    problems = [(p.where, p.kind) for p in report.problems]
    assert len(set(problems)) == len(problems) and report.ok == (not problems)
    return sorted(problems)


def test_an_untampered_log_verifies_clean_before_and_after_its_seal(world, codes):
    report = check(world, [DAY])
    assert report.ok and not report.days[0].sealed
    assert report.days[0].entries == 16 and report.days[0].residents == sorted(codes)
    assert report.days[0].status == "not sealed yet; 4 chain(s) verified"

    world.seal(DAY)
    report = check(world, [DAY, "2026-11-25"], codes)
    assert report.ok, report.problems
    assert [(d.day, d.sealed, d.entries) for d in report.days] == [(DAY, True, 16), ("2026-11-25", False, 0)]
    assert report.days[0].status == "verified against the seal"
    assert report.days[1].status == "no entries"
    assert report.residents == codes


# --- not sealed yet: the chains --------------------------------------------------------


def test_unsealed_edited_entry(world, codes):
    edit_recipient(world, codes[1], 2)
    assert found(world) == [(ref(codes[1], 2), "edited")]


def test_unsealed_entry_removed_from_the_middle(world, codes):
    delete(world, codes[2], 2)
    assert found(world) == [(ref(codes[2], 2), "removed")]


def test_unsealed_last_entry_removed(world, codes):
    delete(world, codes[0], 4)  # only the head (the writer's hint) still says the chain has 4 entries
    assert found(world) == [(ref(codes[0], 4), "removed")]


@pytest.mark.parametrize("positions", [(1, 2), (2, 3), (3, 4), (1, 3), (1, 4)])
def test_unsealed_swap_names_only_the_two_entries(world, codes, positions):
    a, b = positions
    swap(world, codes[3], a, b)
    assert found(world) == [(ref(codes[3], a), "reordered"), (ref(codes[3], b), "reordered")]


def test_several_tamperings_are_each_named_once(world, codes):
    edit_recipient(world, codes[0], 1)
    delete(world, codes[1], 3)
    edit_recipient(world, codes[2], 4)
    assert found(world, residents=codes) == sorted([
        (ref(codes[0], 1), "edited"), (ref(codes[1], 3), "removed"), (ref(codes[2], 4), "edited")])


def test_without_a_seal_a_consistently_rewritten_chain_escapes_the_chain_check_which_is_why_days_are_sealed(
        world, codes):
    rewrite_chain(world, codes[1])
    assert found(world, residents=codes) == []
    world.seal(DAY)  # sealed after the rewrite: the seal vouches for what it saw
    assert found(world, residents=codes) == []


# --- sealed: the manifest --------------------------------------------------------------


def test_sealed_edited_entry(world, sealed):
    edit_recipient(world, sealed[1], 2)
    assert found(world) == [(ref(sealed[1], 2), "edited")]


def test_sealed_entry_removed_from_the_middle(world, sealed):
    delete(world, sealed[2], 2)
    assert found(world) == [(ref(sealed[2], 2), "removed")]


def test_sealed_last_entry_removed(world, sealed):
    delete(world, sealed[0], 4)
    assert found(world) == [(ref(sealed[0], 4), "removed")]


@pytest.mark.parametrize("positions", [(1, 2), (3, 4), (1, 4)])
def test_sealed_swapped_entries(world, sealed, positions):
    a, b = positions
    swap(world, sealed[3], a, b)
    assert found(world) == [(ref(sealed[3], a), "edited"), (ref(sealed[3], b), "edited")]


def test_sealed_forged_entry_inserted(world, sealed):
    head = get(world, sealed[0], 4)["hash"]["S"]
    forge_entry(world, sealed[0], 5, head)
    assert found(world) == [(ref(sealed[0], 5), "inserted")]


def test_sealed_forged_chain_of_a_resident_never_provided(world, sealed):
    stranger = "50000000016"
    forge_entry(world, stranger, 1, GENESIS, template_code=sealed[0])
    assert found(world) == [(ref(stranger, 1), "inserted")]


def test_sealed_chain_rewritten_consistently(world, sealed):
    length = rewrite_chain(world, sealed[1])
    assert found(world) == [(ref(sealed[1], n), "edited") for n in range(1, length + 1)]


def test_sealed_chain_rewritten_consistently_is_named_by_the_seal_even_when_chains_are_also_checked(world, sealed):
    rewrite_chain(world, sealed[1])
    assert found(world, residents=sealed) == [(ref(sealed[1], n), "edited") for n in range(1, 5)]


def test_forged_seal_signature_is_seal_invalid(world, sealed):
    seal_key = {"pk": {"S": "SEALS"}, "sk": {"S": FIRST}}
    item = world.ddb.get_item(TableName=world.log_table, Key=seal_key)["Item"]
    # The attacker's own P-256 key signs the attacker's manifest.
    other = world.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    message = seal_message(FIRST, int(item["count"]["N"]), item["digest"]["S"], item["prev"]["S"])
    forged = world.kms.sign(KeyId=other, Message=message, MessageType="RAW",
                            SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    world.ddb.put_item(TableName=world.log_table, Item={**item, "signature": {"B": forged}})
    assert found(world) == [(FIRST, "seal_invalid")]


def test_garbage_seal_signature_is_seal_invalid(world, sealed):
    seal_key = {"pk": {"S": "SEALS"}, "sk": {"S": FIRST}}
    item = world.ddb.get_item(TableName=world.log_table, Key=seal_key)["Item"]
    world.ddb.put_item(TableName=world.log_table, Item={**item, "signature": {"B": b"\x30\x06\x02\x01\x01\x02\x01\x01"}})
    assert found(world) == [(FIRST, "seal_invalid")]


def test_manifest_rewritten_to_match_a_tampered_table_is_caught_by_the_signed_digest(world, sealed):
    import gzip

    edit_recipient(world, sealed[0], 1)
    part_key = {"pk": {"S": f"SEAL#{FIRST}"}, "sk": {"S": "PART#00000"}}
    part = world.ddb.get_item(TableName=world.log_table, Key=part_key)["Item"]
    lines = gzip.decompress(part["refs"]["B"]).decode().splitlines()
    lines = [line for line in lines if not line.startswith(ref(sealed[0], 1))]
    world.ddb.put_item(TableName=world.log_table,
                       Item={**part, "refs": {"B": gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)}})
    # The manifest no longer vouches for the day: the entries are checked by their chains, which
    # find the edit too.
    assert found(world) == sorted([(FIRST, "manifest"), (ref(sealed[0], 1), "edited")])


def test_sealed_entry_removed_behind_a_decoy_index_item(world, sealed):
    victim = get(world, sealed[2], 2)
    delete(world, sealed[2], 2)
    put(world, {"pk": {"S": "DECOY"}, "sk": {"S": "DECOY"}, "day_shard": victim["day_shard"],
                "entry_ref": victim["entry_ref"], "hash": victim["hash"]})
    # The index still shows the entry with its sealed hash; the entry itself is gone.
    assert found(world) in ([(ref(sealed[2], 2), "removed")], [(ref(sealed[2], 2), "edited")])


def test_sealed_forged_entry_kept_out_of_the_by_day_index_is_caught_through_its_chain(world, sealed):
    """The day's seal sees only what the by_day index shows; the chain check compares each
    entry with the seal of its day, so an entry kept out of the index still shows."""
    head = get(world, sealed[0], 4)["hash"]["S"]
    forge_entry(world, sealed[0], 5, head)
    item = get(world, sealed[0], 5)
    put(world, {k: v for k, v in item.items() if k not in ("day_shard", "entry_ref")})
    assert found(world, residents=sealed) == [(ref(sealed[0], 5), "inserted")]


def test_sealed_junk_index_item_is_reported_not_fatal(world, sealed):
    put(world, {"pk": {"S": "JUNK"}, "sk": {"S": "JUNK"}, "day_shard": {"S": f"{DAY}#00"},
                "entry_ref": {"S": "junk"}, "hash": {"S": "0" * 64}})
    assert found(world) == [("junk", "inserted")]


def test_a_day_left_unsealed_past_the_sealers_run_is_a_problem(world, codes):
    at = dt.datetime.fromisoformat(DAY).replace(tzinfo=JST)
    still_due = check(world, [DAY], now=at + dt.timedelta(days=1, hours=1))
    assert still_due.ok  # 01:00 JST the next day: the sealer may still be running
    overdue = check(world, [DAY], now=at + dt.timedelta(days=1, hours=3))
    assert [(p.where, p.kind) for p in overdue.problems] == [(DAY, "seal_missing")]
    world.seal(DAY)
    assert check(world, [DAY], now=at + dt.timedelta(days=5)).ok
