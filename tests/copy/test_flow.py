"""The wide-area copy through the counter API, the channel and the home municipality's local
records (moto): 松本市's counter issues a copy of a 長野市 resident's record; refusals with codes;
the attacks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io

import pypdf
import pytest

from jukinet.adapters.copy_store import CopyStore

from ..channel.world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, TOKYO_PREF, UEDA, resident
from .world import CopyWorld, Person, counter

HEAD = Person(resident(11), "信濃太郎", household="1001", relationship="01", householder="信濃太郎")
WIFE = Person(resident(12), "信濃花子", kana="シナノハナコ", sex="2", household="1001", relationship="02",
              householder="信濃太郎")
CHILD = Person(resident(13), "信濃一郎", kana="シナノイチロウ", birth="2001-05-05", household="1001",
               relationship="04", householder="信濃太郎")
NEIGHBOUR = Person(resident(14), "更科次郎", household="2002", relationship="01", householder="更科次郎")


def family(world: CopyWorld, home: str = NAGANO) -> None:
    for person in (HEAD, WIFE, CHILD, NEIGHBOUR):
        world.live(home, person)


def pdf_text(result: dict) -> str:
    data = base64.b64decode(result["pdf"])
    assert hashlib.sha256(data).hexdigest() == result["pdf_sha256"]
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def test_matsumoto_issues_a_copy_of_a_nagano_residents_record(world: CopyWorld) -> None:
    family(world)
    result = world.copy(HEAD.code, NAGANO)
    assert result["status"] == "issued"
    assert result["serial"] == f"{MATSUMOTO}-2003-000001"
    assert result["issued_on_ja"] == "平成15年1月20日"
    assert [r["resident_code"] for r in result["rows"]] == [HEAD.code]  # no members asked for
    text = pdf_text(result)
    for expected in ("住民票の写し（広域交付）", "信濃太郎", "シナノタロウ", "昭和45年1月1日", "男", "世帯主",
                     "長野県長野市大字鶴賀1番地", f"交付番号 {MATSUMOTO}-2003-000001", "平成15年1月20日",
                     "松本市長", "長野市（202011）", "住民基本台帳法第12条の4", "東京都千代田区霞が関1-1"):
        assert expected in text, expected
    for absent in ("鶴賀緑町1613", "信濃一郎", "123456789018"):  # 本籍, 筆頭者 (also a member's name), 個人番号
        assert absent not in text
        assert absent not in str(result["rows"])
    # B's record and counts; A's record that a copy was answered for issue elsewhere.
    record = CopyStore(f"jukinet-cards-{NAGANO_PREF}").request(result["correlation"])
    assert record["serial"] == result["serial"] and record["pdf_sha256"] == result["pdf_sha256"]
    assert record["clerk"] == counter(MATSUMOTO) and record["applicant"] == HEAD.code
    assert '"number": "123456789012"' in record["proof"]
    elsewhere = CopyStore(f"jukinet-cards-{NAGANO_PREF}").answered_elsewhere(NAGANO, "2003-01")
    assert [(e["sk"], e["requester"], e["residents"]) for e in elsewhere] == [
        (result["correlation"], MATSUMOTO, HEAD.code)]
    from jukinet.adapters.card_store import CardStore
    counts = CardStore(f"jukinet-cards-{NAGANO_PREF}").statistics(MATSUMOTO, "2003-01")
    assert counts["wide_area_copy_requested"] == 1 and counts["wide_area_copy_issued"] == 1
    calls = CardStore(f"jukinet-cards-{NAGANO_PREF}").calls(MATSUMOTO, "2003-01")
    assert {c["action"] for c in calls} == {"wide_area_copy_request", "wide_area_copy_result"}
    # Reading it again shows the same copy: same serial, same bytes; counted once.
    status, again = world.outcome(result["correlation"])
    assert (again["serial"], again["pdf_sha256"], again["pdf"]) == (result["serial"], result["pdf_sha256"], result["pdf"])
    assert CardStore(f"jukinet-cards-{NAGANO_PREF}").statistics(MATSUMOTO, "2003-01")["wide_area_copy_issued"] == 1


def test_the_next_copy_takes_the_next_serial_and_is_pending_until_answered(world: CopyWorld) -> None:
    family(world)
    world.copy(HEAD.code, NAGANO)
    status, accepted = world.ask(WIFE.code, NAGANO)
    assert (status, accepted["status"]) == (202, "pending")
    assert world.outcome(accepted["correlation"])[1]["status"] == "pending"
    world.pump()
    assert world.outcome(accepted["correlation"])[1]["serial"] == f"{MATSUMOTO}-2003-000002"


def test_household_members_only_as_requested(world: CopyWorld) -> None:
    family(world)
    named = world.copy(HEAD.code, NAGANO, members=[CHILD.code])
    assert [r["resident_code"] for r in named["rows"]] == [HEAD.code, CHILD.code]
    assert "信濃一郎" in pdf_text(named) and "信濃花子" not in pdf_text(named)
    whole = world.copy(WIFE.code, NAGANO, whole=True)
    assert [r["resident_code"] for r in whole["rows"]] == [WIFE.code, HEAD.code, CHILD.code]
    assert [r["relationship"] for r in whole["rows"]] == ["02", "01", "04"]
    assert all("registered_domicile" not in r and "family_register_head" not in r for r in whole["rows"])


def test_a_member_of_another_household_is_refused(world: CopyWorld) -> None:
    family(world)
    result = world.copy(HEAD.code, NAGANO, members=[NEIGHBOUR.code])
    assert (result["status"], result["refusal"]) == ("refused", "not_in_household")
    assert "pdf" not in result or result["pdf"] is None
    forged = world.copy(NEIGHBOUR.code, NAGANO, members=[HEAD.code])  # a neighbour asking for the family
    assert forged["refusal"] == "not_in_household"
    unknown = world.copy(HEAD.code, NAGANO, members=[resident(99)])
    assert unknown["refusal"] == "not_in_household"


def test_refusals_unknown_and_removed_residents(world: CopyWorld) -> None:
    family(world)
    assert world.copy(resident(98), NAGANO)["refusal"] == "unknown_resident"
    assert world.copy(HEAD.code, UEDA)["refusal"] == "unknown_resident"  # not a resident of the named home
    world.live(NAGANO, CHILD, reason="21", day="2002-10-01")  # 転出
    moved = world.copy(CHILD.code, NAGANO)
    assert moved["refusal"] == "resident_removed"
    # and a moved-out member is no longer in the household
    assert world.copy(HEAD.code, NAGANO, members=[CHILD.code])["refusal"] == "not_in_household"
    from jukinet.adapters.card_store import CardStore
    counts = CardStore(f"jukinet-cards-{NAGANO_PREF}").statistics(MATSUMOTO, "2003-01")
    assert counts["wide_area_copy_refused_unknown_resident"] == 2
    assert counts["wide_area_copy_refused_resident_removed"] == 1


def test_a_card_proof_is_the_servers_record_of_an_authentication_here(world: CopyWorld) -> None:
    family(world)
    chip = world.card(HEAD, NAGANO)
    challenge = world.authenticate(chip, at=MATSUMOTO)
    result = world.copy(HEAD.code, NAGANO, proof={"card_authentication": challenge})
    assert result["status"] == "issued"
    # The same authentication vouches for one request: a retry gets the same correlation.
    status, again = world.ask(HEAD.code, NAGANO, proof={"card_authentication": challenge})
    assert (status, again["correlation"]) == (202, result["correlation"])
    # ... and not for another applicant, nor for another selection of members.
    status, other = world.ask(WIFE.code, NAGANO, proof={"card_authentication": challenge})
    assert (status, other["error"]["code"]) == (403, "PROOF_NOT_VALID")
    status, other = world.ask(HEAD.code, NAGANO, proof={"card_authentication": challenge}, whole=True)
    assert (status, other["error"]["code"]) == (403, "PROOF_NOT_VALID")
    from jukinet.adapters.card_store import CardStore
    calls = CardStore(f"jukinet-cards-{NAGANO_PREF}").calls(MATSUMOTO, "2003-01")
    assert sorted(c["outcome"] for c in calls if c["action"] == "wide_area_copy_request") == [
        "PROOF_NOT_VALID", "PROOF_NOT_VALID", "sent", "sent_again"]


def test_a_card_suspended_after_the_authentication_is_refused_by_the_home(world: CopyWorld) -> None:
    family(world)
    chip = world.card(HEAD, NAGANO)
    challenge = world.authenticate(chip, at=MATSUMOTO)
    status, _ = world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "lost"}, at=NAGANO)
    assert status == 200
    result = world.copy(HEAD.code, NAGANO, proof={"card_authentication": challenge})
    assert (result["status"], result["refusal"]) == ("refused", "card_suspended")


@pytest.mark.parametrize("proof", [
    None,
    {},
    {"document": {"type": "library_card", "number": "1", "clerk": "窓口"}},
    {"document": {"type": "passport", "number": "", "clerk": "窓口"}},
    {"document": {"type": "passport", "number": "TK1234567"}},
])
def test_attack_a_counter_asking_without_proof_is_refused(world: CopyWorld, proof) -> None:
    family(world)
    body = {"resident_code": HEAD.code, "home_municipality": NAGANO}
    if proof is not None:
        body["proof"] = proof
    status, refused = world.call("POST", "/v1/wide-area-copies", body)
    assert (status, refused["error"]["code"]) == (400, "INVALID_REQUEST")
    assert world.sqs.receive_message(QueueUrl=world.queues["muni-200000"]).get("Messages") is None


def test_attack_a_card_authentication_by_another_clerk_or_counter_or_resident_is_no_proof(world: CopyWorld) -> None:
    family(world)
    chip = world.card(HEAD, NAGANO)
    challenge = world.authenticate(chip, at=MATSUMOTO)
    for kwargs in ({"who": counter(MATSUMOTO, "clerk-2")}, {"at": UEDA}):
        status, refused = world.ask(HEAD.code, NAGANO, proof={"card_authentication": challenge}, **kwargs)
        assert (status, refused["error"]["code"]) == (403, "PROOF_NOT_VALID"), kwargs
    status, refused = world.ask(HEAD.code, NAGANO, proof={"card_authentication": "0" * 32})
    assert (status, refused["error"]["code"]) == (403, "PROOF_NOT_VALID")
    world.now += dt.timedelta(minutes=16)
    status, refused = world.ask(HEAD.code, NAGANO, proof={"card_authentication": challenge})
    assert (status, refused["error"]["code"]) == (403, "PROOF_NOT_VALID")


def test_attack_a_clerk_of_another_municipality_reads_a_result_by_its_correlation(world: CopyWorld) -> None:
    family(world)
    result = world.copy(HEAD.code, NAGANO)
    status, refused = world.outcome(result["correlation"], at=UEDA)  # same tier, other municipality
    assert (status, refused["error"]["code"]) == (403, "NOT_THIS_MUNICIPALITY")
    assert "pdf" not in refused and HEAD.kanji not in str(refused)
    status, refused = world.outcome(result["correlation"], at=CHIYODA)  # other tier: not its table either
    assert status == 403


def test_attack_a_forged_nudge_sends_nothing_not_recorded_by_the_counter(world: CopyWorld) -> None:
    from jukinet.services.wide_area_copy import nudge
    family(world)
    world.send("muni-200000", nudge(f"{MATSUMOTO}-200301-{'a' * 32}"))
    world.pump()
    assert [q for q, _ in world.delivered] == ["muni-200000"]  # consumed, nothing sent on


def test_a_copy_across_prefectures(world: CopyWorld) -> None:
    family(world, home=CHIYODA)
    result = world.copy(WIFE.code, CHIYODA, at=NAGANO, members=[CHILD.code])
    assert result["status"] == "issued" and result["serial"].startswith(f"{NAGANO}-2003-")
    text = pdf_text(result)
    assert "千代田区（131016）" in text and "長野市長" in text
    from jukinet.adapters.copy_store import CopyStore as Store
    assert Store(f"jukinet-cards-{TOKYO_PREF}").answered_elsewhere(CHIYODA, "2003-01")[0]["requester"] == NAGANO


def test_a_card_whose_validity_ran_out_since_the_authentication_is_refused_by_the_home(world: CopyWorld) -> None:
    import dataclasses

    from jukinet.adapters.card_store import CardStore, card_item
    family(world)
    chip = world.card(HEAD, NAGANO)
    challenge = world.authenticate(chip, at=MATSUMOTO)
    store = CardStore(f"jukinet-cards-{NAGANO_PREF}")
    card = store.card(chip.serial)
    # the card's last valid day was yesterday (JST): stored as active, but no longer valid
    expired = dataclasses.replace(card, valid_until=(world.now - dt.timedelta(days=1)).date())
    world.ddb.put_item(TableName=f"jukinet-cards-{NAGANO_PREF}", Item=card_item(expired))
    result = world.copy(HEAD.code, NAGANO, proof={"card_authentication": challenge})
    assert (result["status"], result["refusal"]) == ("refused", "card_suspended")
