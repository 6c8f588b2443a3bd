"""The wide-area copy's content (domain/wide_area_copy.py): 本籍 and 筆頭者 (and the individual
number) are never in an answer, whatever the record holds; household members only as asked and
only of the applicant's household; the proofs and the Japanese dates."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.domain.errors import ValidationError
from jukinet.domain.facts import ChangeReason
from jukinet.domain.local_record import ACTIVE, DELETED, LocalRecord, LocalRecordFields, Relationship
from jukinet.domain import wide_area_copy as wac

CODES = st.integers(min_value=1, max_value=10**9).map(lambda n: __import__(
    "jukinet.domain.codes", fromlist=["ResidentCode"]).ResidentCode.from_body(f"{n:010d}").value)
TEXT = st.text(alphabet=st.sampled_from("長野県市町村大字番地一二三之信濃太郎花子"), min_size=1, max_size=20)
MARKED = st.text(alphabet=st.sampled_from("ΩΨΦ"), max_size=8)  # 本籍/筆頭者 values: nothing else uses these
DATES = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31))


@st.composite
def records(draw, household: str | None = None, status: str | None = None) -> LocalRecord:
    code = draw(CODES)
    local = LocalRecordFields(
        household_number=household if household is not None else draw(st.none() | st.sampled_from(["1", "2"])),
        householder_name=draw(st.none() | TEXT), relationship=draw(st.none() | st.sampled_from(list(Relationship))),
        resident_since=draw(st.none() | DATES), address_since=draw(st.none() | DATES),
        notification_date=draw(st.none() | DATES), previous_address=draw(st.none() | TEXT),
        registered_domicile="籍" + draw(MARKED), family_register_head="筆" + draw(MARKED))
    facts = {"resident_code": code, "name": {"kanji": draw(TEXT), "kana": "シナノ"},
             "birth_date": draw(DATES).isoformat(), "sex": draw(st.sampled_from(["1", "2"])), "address": draw(TEXT),
             "individual_number": "123456789018"}
    return LocalRecord(municipality="202011", resident_code=code, status=status or draw(st.sampled_from([ACTIVE])),
                       reason=draw(st.sampled_from([ChangeReason.MOVE_IN, ChangeReason.BIRTH, ChangeReason.MOVE_WITHIN])),
                       change_date=draw(DATES), facts=facts, local=local, last_notice_id="n")


@settings(max_examples=150, deadline=None)
@given(applicant=records(household="1"), household=st.lists(records(), max_size=6), whole=st.booleans(),
       pick=st.lists(st.integers(min_value=0, max_value=5), max_size=3, unique=True))
def test_the_domicile_its_head_and_the_individual_number_are_never_in_an_answer(applicant, household, whole, pick):
    members = tuple(dict.fromkeys(household[i].resident_code for i in pick if i < len(household)
                                  and household[i].resident_code != applicant.resident_code))
    query = wac.CopyQuery(applicant.resident_code, members if not whole else (), whole and not members)
    outcome = wac.answer(query, applicant, household, "202011")
    text = json.dumps([outcome.code, outcome.detail] if isinstance(outcome, wac.Refusal) else outcome,
                      ensure_ascii=False)
    assert not {"籍", "筆", "Ω", "Ψ", "Φ"} & set(text)
    assert "123456789018" not in text
    for field in wac.NEVER_SENT:
        assert f'"{field}"' not in text
    if isinstance(outcome, dict):
        wac.check_rows(outcome)  # B accepts exactly this shape


@settings(max_examples=150, deadline=None)
@given(applicant=records(household="1"), same=st.lists(records(household="1"), max_size=4),
       other=st.lists(records(household="2"), max_size=3), whole=st.booleans())
def test_members_only_as_asked_and_only_of_the_applicants_household(applicant, same, other, whole):
    household = [*same, *other]
    asked = tuple(dict.fromkeys(m.resident_code for m in same if m.resident_code != applicant.resident_code))
    query = wac.CopyQuery(applicant.resident_code, () if whole else asked, whole)
    outcome = wac.answer(query, applicant, household, "202011")
    assert isinstance(outcome, dict)
    codes = [r["resident_code"] for r in outcome["rows"]]
    assert codes[0] == applicant.resident_code
    assert set(codes[1:]) == set(asked) or (whole and set(codes[1:]) == set(asked))
    assert not set(codes[1:]) & {m.resident_code for m in other} - {m.resident_code for m in same}
    nobody = wac.answer(wac.CopyQuery(applicant.resident_code), applicant, household, "202011")
    assert [r["resident_code"] for r in nobody["rows"]] == [applicant.resident_code]
    if other and other[0].resident_code not in {m.resident_code for m in same} | {applicant.resident_code}:
        refused = wac.answer(wac.CopyQuery(applicant.resident_code, (other[0].resident_code,)), applicant,
                             household, "202011")
        assert refused == wac.Refusal("not_in_household", "1 of the requested members")


def test_a_removed_or_unknown_applicant_is_refused() -> None:
    query = wac.CopyQuery("24727059608")
    assert wac.answer(query, None, [], "202011").code == "unknown_resident"
    removed = LocalRecord(municipality="202011", resident_code="24727059608", status=DELETED,
                          reason=ChangeReason.MOVE_OUT, change_date=dt.date(2002, 1, 1), facts=None,
                          local=LocalRecordFields(), last_notice_id="n")
    assert wac.answer(query, removed, [], "202011").code == "resident_removed"


def test_b_refuses_an_answer_carrying_more_than_a_copys_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        wac.check_rows({"rows": [{"resident_code": "1", "name": "x", "registered_domicile": "長野県"}]})
    assert exc.value.rule == "fields"


@pytest.mark.parametrize(("day", "expected"), [
    (dt.date(2026, 12, 4), "令和8年12月4日"), (dt.date(2019, 5, 1), "令和元年5月1日"),
    (dt.date(2019, 4, 30), "平成31年4月30日"), (dt.date(1989, 1, 7), "昭和64年1月7日"),
    (dt.date(1970, 1, 1), "昭和45年1月1日"), (dt.date(1926, 12, 24), "大正15年12月24日"),
])
def test_japanese_dates(day, expected) -> None:
    assert wac.japanese_date(day) == expected


# The proof's shape (one of the two, the document type one of DOCUMENT_TYPES, the lengths) is the
# request model's (tests/card/test_invalid_requests.py); the domain checks what the model cannot say.
@pytest.mark.parametrize(("proof", "field", "rule"), [
    (wac.CardProof("xyz"), "proof.card_authentication", "format"),
    (wac.CardProof("A" * 32), "proof.card_authentication", "format"),
    (wac.DocumentProof("passport", "", "a"), "proof.document.number", "format"),
    (wac.DocumentProof("passport", "TK 1", "a"), "proof.document.number", "format"),
    (wac.DocumentProof("passport", "TK1", ""), "proof.document.clerk", "format"),
    (wac.DocumentProof("passport", "TK1", "\u3000"), "proof.document.clerk", "format"),
    (wac.DocumentProof("passport", "TK1", "a\x07"), "proof.document.clerk", "format"),
])
def test_a_proof_names_its_rule(proof, field, rule) -> None:
    with pytest.raises(ValidationError) as exc:
        wac.checked_proof(proof)
    assert (exc.value.field, exc.value.rule) == (field, rule)


def test_a_proof_is_kept_normalised() -> None:
    assert wac.checked_proof(wac.DocumentProof("passport", " ＴＫ－１ ", " 窓口　花子 ")) == \
        wac.DocumentProof("passport", "TK-1", "窓口 花子")
    card = wac.CardProof("0" * 32)
    assert wac.checked_proof(card) is card
