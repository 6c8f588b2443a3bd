"""The ordering rule: any arrival order, with any duplicates, gives one state and history."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.domain.codes import LocalGovernmentCode, ResidentCode
from jukinet.domain.facts import ChangeReason, IdentityFacts
from jukinet.domain.notice import UpdateNotice
from jukinet.domain.ordering import ResidentRecord, ResidentStatus, converge, events_for, supersedes

from .strategies import UTC, Story, resident_codes, resident_stories, update_notices

NAGANO_CITY = LocalGovernmentCode.parse("202011")
MATSUMOTO = LocalGovernmentCode.parse("202029")
CODE = ResidentCode.parse("24727059608")
NEW_CODE = ResidentCode.parse("50000000016")


def _facts(address: str, code: ResidentCode = CODE) -> IdentityFacts:
    return IdentityFacts.parse({
        "resident_code": code.value, "name": {"kanji": "丸山　花子", "kana": "マルヤマ　ハナコ"},
        "birth_date": "1980-05-05", "sex": "2", "address": address,
    })


def _notice(reason: ChangeReason, municipality: LocalGovernmentCode, sequence: int, change_date: str,
            notice_time: str, facts: IdentityFacts | None = None, code: ResidentCode = CODE,
            previous: ResidentCode | None = None) -> UpdateNotice:
    return UpdateNotice(
        municipality=municipality, sequence=sequence, resident_code=code, reason=reason,
        change_date=dt.date.fromisoformat(change_date),
        notice_time=dt.datetime.fromisoformat(notice_time).replace(tzinfo=UTC),
        facts=facts, previous_resident_code=previous,
    )


def _state(records: dict[str, ResidentRecord]) -> dict:
    """Everything a reader can observe: current state and ordered history per code."""
    return {
        code: (
            record.current.notice_id, record.current.status, record.current.facts,
            record.current.replaced_by, record.current.replaces,
            [(e.notice_id, e.status) for e in record.ordered_history()],
        )
        for code, record in records.items()
    }


def _rule_tuple(n: UpdateNotice) -> tuple:
    return (n.change_date, n.reason.precedence, n.notice_time, n.municipality.value, n.sequence)


# --- the scenarios of domain.md §2 ------------------------------------------------------------

BIRTH = _notice(ChangeReason.BIRTH, NAGANO_CITY, 1, "2003-01-10", "2003-01-11T00:00:00",
                _facts("長野県長野市大字鶴賀緑町1613番地"))
# 松本市 reports the 転入 first; 長野市's 転出, dated earlier, is reported days later.
MOVE_IN = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 7, "2003-03-25", "2003-03-26T02:00:00",
                  _facts("長野県松本市丸の内3番7号"))
STALE_MOVE_OUT = _notice(ChangeReason.MOVE_OUT, NAGANO_CITY, 2, "2003-03-20", "2003-03-31T08:00:00")


def test_stale_move_out_does_not_erase_newer_move_in():
    for arrival in ([BIRTH, MOVE_IN, STALE_MOVE_OUT], [STALE_MOVE_OUT, MOVE_IN, BIRTH], [MOVE_IN, STALE_MOVE_OUT]):
        record = converge(arrival)[CODE.value]
        assert record.current.notice is MOVE_IN
        assert record.current.status is ResidentStatus.ACTIVE
        assert record.current.facts.address == "長野県松本市丸の内3番7号"


def test_stale_move_out_still_enters_the_history_in_date_order():
    record = converge([BIRTH, MOVE_IN, STALE_MOVE_OUT])[CODE.value]
    assert [e.notice for e in record.ordered_history()] == [BIRTH, STALE_MOVE_OUT, MOVE_IN]


def test_apply_reports_a_stale_notice_as_stored_but_not_current():
    record = ResidentRecord(CODE.value)
    assert record.apply(events_for(MOVE_IN)[0]) == (True, True)
    assert record.apply(events_for(STALE_MOVE_OUT)[0]) == (True, False)


def test_same_day_move_out_and_move_in_leave_the_resident_active_at_the_new_municipality():
    move_in = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 8, "2003-04-01", "2003-04-01T01:00:00",
                      _facts("長野県松本市丸の内3番7号"))
    move_out = _notice(ChangeReason.MOVE_OUT, NAGANO_CITY, 3, "2003-04-01", "2003-04-02T09:00:00")
    for arrival in ([move_in, move_out], [move_out, move_in]):
        record = converge([BIRTH, *arrival])[CODE.value]
        assert record.current.notice is move_in


def test_move_in_dated_before_a_move_out_loses_to_it():
    # The dates decide, not the reasons: a 転出 dated after the 転入 ends the registration.
    move_in = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 8, "2003-04-01", "2003-04-01T01:00:00",
                      _facts("長野県松本市丸の内3番7号"))
    move_out = _notice(ChangeReason.MOVE_OUT, MATSUMOTO, 9, "2004-04-01", "2004-04-01T01:00:00")
    record = converge([move_out, move_in])[CODE.value]
    assert record.current.status is ResidentStatus.DELETED


def test_death_ends_the_record_even_when_a_same_day_update_is_reported_later():
    death = _notice(ChangeReason.DEATH, NAGANO_CITY, 3, "2010-06-01", "2010-06-02T00:00:00")
    moved = _notice(ChangeReason.MOVE_WITHIN, NAGANO_CITY, 4, "2010-06-01", "2010-06-09T00:00:00",
                    _facts("長野県長野市大字南長野幅下692番地2"))
    for arrival in ([BIRTH, death, moved], [moved, BIRTH, death]):
        record = converge(arrival)[CODE.value]
        assert record.current.notice is death
        assert record.current.status is ResidentStatus.DELETED and record.current.facts is None


def test_code_change_moves_the_facts_to_the_new_code_and_links_both_ways():
    change = _notice(ChangeReason.CODE_CHANGE, NAGANO_CITY, 5, "2005-01-01", "2005-01-02T00:00:00",
                     _facts("長野県長野市大字鶴賀緑町1613番地", NEW_CODE), code=NEW_CODE, previous=CODE)
    for arrival in ([BIRTH, change], [change, BIRTH]):
        records = converge(arrival)
        old, new = records[CODE.value], records[NEW_CODE.value]
        assert old.current.status is ResidentStatus.CODE_CHANGED and old.current.replaced_by == NEW_CODE.value
        assert old.current.facts is None
        assert new.current.status is ResidentStatus.ACTIVE and new.current.replaces == CODE.value
        assert new.current.facts.resident_code == NEW_CODE


def test_duplicate_notice_changes_nothing():
    record = ResidentRecord(CODE.value)
    record.apply(events_for(BIRTH)[0])
    before = _state({CODE.value: record})
    assert record.apply(events_for(BIRTH)[0]) == (False, False)
    assert _state({CODE.value: record}) == before


def test_correction_dated_before_the_current_state_goes_to_history_only():
    correction = _notice(ChangeReason.CORRECTION_BY_AUTHORITY, NAGANO_CITY, 9, "2003-02-01",
                         "2003-04-15T00:00:00", _facts("長野県長野市大字鶴賀緑町1613番地の2"))
    record = converge([BIRTH, MOVE_IN, correction])[CODE.value]
    assert record.current.notice is MOVE_IN
    assert correction.notice_id in record.history


def test_supersedes_only_a_strictly_greater_key():
    assert supersedes("b", None) and supersedes("b", "a")
    assert not supersedes("a", "a") and not supersedes("a", "b")


# --- convergence properties ---------------------------------------------------------------------

@st.composite
def _arrivals(draw: st.DrawFn, notices: list[UpdateNotice]) -> list[UpdateNotice]:
    """The notices in any order, each possibly delivered more than once (at-least-once queues)."""
    order = draw(st.permutations(notices))
    duplicates = draw(st.lists(st.sampled_from(notices), max_size=len(notices))) if notices else []
    arrival = list(order)
    for dup in duplicates:
        arrival.insert(draw(st.integers(0, len(arrival))), dup)
    return arrival


@settings(deadline=None, max_examples=200)
@given(story=resident_stories(), data=st.data())
def test_every_arrival_order_with_duplicates_converges_to_the_same_state_and_history(story: Story, data):
    reference = _state(converge(sorted(story.notices, key=_rule_tuple)))
    for _ in range(3):
        assert _state(converge(data.draw(_arrivals(story.notices)))) == reference


@settings(deadline=None, max_examples=200)
@given(story=resident_stories(), data=st.data())
def test_final_state_follows_the_dates_of_the_changes_not_the_arrival_order(story: Story, data):
    records = converge(data.draw(_arrivals(story.notices)))
    assert set(records) == set(story.expected)
    for code, (status, facts, replaced_by) in story.expected.items():
        current = records[code].current
        assert (current.status.value, current.facts, current.replaced_by) == (status, facts, replaced_by)


@settings(deadline=None)
@given(story=resident_stories(), data=st.data())
def test_current_state_is_the_greatest_notice_by_the_rule_tuple(story: Story, data):
    for record in converge(data.draw(_arrivals(story.notices))).values():
        assert _rule_tuple(record.current.notice) == max(_rule_tuple(e.notice) for e in record.history.values())


@st.composite
def _random_notices_for_few_residents(draw: st.DrawFn) -> list[UpdateNotice]:
    """Unscripted notices (any reason, any dates) about two or three residents."""
    codes = draw(st.lists(resident_codes, min_size=2, max_size=3, unique=True))
    notices: list[UpdateNotice] = []
    used: set[tuple[str, int]] = set()
    for _ in range(draw(st.integers(1, 12))):
        notice = draw(update_notices(resident_code=draw(st.sampled_from(codes)),
                                     sequence=draw(st.integers(1, 50))))
        if (notice.municipality.value, notice.sequence) not in used:  # one notice per notice id
            used.add((notice.municipality.value, notice.sequence))
            notices.append(notice)
    return notices


@settings(deadline=None)
@given(notices=_random_notices_for_few_residents(), data=st.data())
def test_unscripted_notices_also_converge_whatever_the_order(notices, data):
    reference = _state(converge(notices))
    assert _state(converge(data.draw(_arrivals(notices)))) == reference


@given(notice=update_notices(reason=ChangeReason.CODE_CHANGE))
def test_code_change_bears_on_two_codes_and_every_other_notice_on_one(notice):
    events = events_for(notice)
    assert [e.resident_code for e in events] == [notice.resident_code.value, notice.previous_resident_code.value]
    assert {e.notice_id for e in events} == {notice.notice_id}


@given(notice=update_notices().filter(lambda n: n.reason is not ChangeReason.CODE_CHANGE))
def test_deletions_carry_no_facts_into_the_state(notice):
    (event,) = events_for(notice)
    if notice.reason.kind.value == "deletion":
        assert event.status is ResidentStatus.DELETED and event.facts is None
    else:
        assert event.status is ResidentStatus.ACTIVE and event.facts is notice.facts


def test_a_second_notice_with_a_used_notice_id_is_ignored():
    # Documented limit: the notice id is the deduplication key, so a CS must never reuse a
    # sequence number for different content; the first copy to arrive is the one kept.
    first = _notice(ChangeReason.MOVE_WITHIN, NAGANO_CITY, 1, "2010-01-01", "2010-01-02T00:00:00",
                    _facts("長野県長野市大字南長野幅下692番地2"))
    later = dataclasses.replace(first, change_date=dt.date(2011, 1, 1), notice_time=dt.datetime(2011, 1, 2, tzinfo=UTC))
    record = converge([first, later])[CODE.value]
    assert record.current.notice is first and len(record.history) == 1
