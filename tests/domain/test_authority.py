"""Who may change which resident (domain.authority), and how far a date of change may lie ahead."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jukinet.domain.authority import Holding, screen
from jukinet.domain.codes import LocalGovernmentCode, ResidentCode
from jukinet.domain.errors import ValidationError
from jukinet.domain.facts import ChangeReason
from jukinet.domain.notice import UpdateNotice

from .strategies import UTC, Story, identity_facts, resident_stories

NAGANO, MATSUMOTO, UEDA = (LocalGovernmentCode(c) for c in ("202011", "202029", "202037"))
CODE = ResidentCode("24727059608")
OTHER = ResidentCode("50000000016")
NOW = dt.datetime(2003, 1, 20, 1, 0, tzinfo=UTC)


def _notice(reason: ChangeReason, municipality: LocalGovernmentCode, seq: int, on: str,
            at: dt.datetime = NOW, code: ResidentCode = CODE, previous: ResidentCode | None = None) -> UpdateNotice:
    from hypothesis import find

    facts = None
    if reason.kind.name != "DELETION":
        facts = find(identity_facts(resident_code=code, birth_date=dt.date(1970, 1, 1)), lambda _: True)
    return UpdateNotice(municipality=municipality, sequence=seq, resident_code=code, reason=reason,
                        change_date=dt.date.fromisoformat(on), notice_time=at, facts=facts,
                        previous_resident_code=previous)


def _held_by(notice: UpdateNotice) -> dict[str, Holding]:
    return {notice.resident_code.value: Holding(notice.municipality.value, notice.reason, notice.change_date,
                                                notice.order_key)}


# --- item 1: a municipality changes only its own residents ---------------------------------

@pytest.mark.parametrize("reason", [ChangeReason.DEATH, ChangeReason.MOVE_WITHIN, ChangeReason.DELETION_BY_AUTHORITY,
                                    ChangeReason.CORRECTION_BY_AUTHORITY, ChangeReason.NAME_CHANGE,
                                    ChangeReason.BIRTH, ChangeReason.ENTRY_BY_AUTHORITY])
def test_municipality_may_not_change_a_resident_another_municipality_holds(reason):
    held = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 1, "2003-01-06")
    attack = _notice(reason, NAGANO, 1, "2003-01-19")
    accepted, refused = screen([attack], _held_by(held))
    assert accepted == []
    [(notice, why)] = refused
    assert notice is attack and (why.field, why.rule) == ("municipality", "holder")
    assert "202029" in why.detail


def test_notice_older_than_the_current_state_goes_through_to_the_history_only():
    held = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 1, "2003-01-06")
    late = _notice(ChangeReason.MOVE_WITHIN, NAGANO, 1, "2003-01-05")
    accepted, refused = screen([late], _held_by(held))
    assert refused == [] and accepted == [late] and late.order_key < held.order_key


def test_move_out_dated_after_the_other_municipalitys_move_in_is_refused():
    held = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 1, "2003-01-06")
    _, refused = screen([_notice(ChangeReason.MOVE_OUT, NAGANO, 1, "2003-01-19")], _held_by(held))
    assert len(refused) == 1


def test_code_change_may_not_take_over_another_municipalitys_code():
    held = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 1, "2003-01-06", code=OTHER)
    attack = _notice(ChangeReason.CODE_CHANGE, NAGANO, 1, "2003-01-19", code=CODE, previous=OTHER)
    _, [(_, why)] = screen([attack], _held_by(held))
    assert why.rule == "holder" and "previous resident code" in why.detail


def test_holder_may_send_every_reason_and_newcomers_may_move_in():
    held = _notice(ChangeReason.MOVE_IN, NAGANO, 1, "2003-01-06")
    own = [_notice(r, NAGANO, i, "2003-01-19") for i, r in enumerate(
        [ChangeReason.MOVE_WITHIN, ChangeReason.NAME_CHANGE, ChangeReason.DEATH], start=2)]
    move_in = _notice(ChangeReason.SPECIAL_MOVE_IN, MATSUMOTO, 1, "2003-01-20")
    accepted, refused = screen([*own, move_in], _held_by(held))
    assert refused == [] and len(accepted) == 4


def test_old_municipalitys_late_move_out_goes_through_and_new_municipality_continues_in_one_message():
    held = _notice(ChangeReason.MOVE_WITHIN, NAGANO, 1, "2003-01-02")
    move_in = _notice(ChangeReason.MOVE_IN, MATSUMOTO, 1, "2003-01-10")
    within = _notice(ChangeReason.MOVE_WITHIN, MATSUMOTO, 2, "2003-01-15")
    late_move_out = _notice(ChangeReason.MOVE_OUT, NAGANO, 2, "2003-01-09", at=NOW + dt.timedelta(days=1))
    accepted, refused = screen([within, move_in], _held_by(held))
    assert refused == [] and len(accepted) == 2
    after = {CODE.value: Holding("202029", ChangeReason.MOVE_WITHIN, within.change_date, within.order_key)}
    accepted, refused = screen([late_move_out], after)
    assert refused == [] and accepted == [late_move_out]


def test_unknown_resident_may_be_entered_by_any_municipality():
    accepted, refused = screen([_notice(ChangeReason.BIRTH, UEDA, 1, "2003-01-19")], {})
    assert refused == [] and len(accepted) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resident_stories(), st.data())
def test_every_real_story_passes_when_notices_arrive_in_report_order_in_any_batches(story: Story, data):
    """Legitimate flows: whatever moves, late move-outs, code changes and deaths a story holds,
    delivered in the order the municipalities reported them (each municipality in its own
    sequence order, interleaved by report time), split into any batches, nothing is refused."""
    notices = sorted(story.notices, key=lambda n: (n.notice_time, n.municipality.value, n.sequence))
    own_order = {m: iter(sorted((n for n in notices if n.municipality == m), key=lambda n: n.sequence))
                 for m in {n.municipality for n in notices}}
    notices = [next(own_order[n.municipality]) for n in notices]
    holdings: dict[str, Holding] = {}
    start = 0
    while start < len(notices):
        end = data.draw(st.integers(start + 1, len(notices)))
        accepted, refused = screen(notices[start:end], holdings)
        assert refused == [], refused
        for notice in accepted:  # what the store does: the greatest notice is current
            from jukinet.domain.ordering import events_for

            for event in events_for(notice):
                held = holdings.get(event.resident_code)
                if held is None or event.order_key > held.order_key:
                    holdings[event.resident_code] = Holding(notice.municipality.value, notice.reason,
                                                            notice.change_date, event.order_key)
        start = end


# --- item 1: bounded dates of change ---------------------------------------------------------

def test_death_dated_2999_is_refused_with_field_and_rule():
    with pytest.raises(ValidationError) as exc:
        _notice(ChangeReason.DEATH, NAGANO, 1, "2999-12-31")
    assert (exc.value.field, exc.value.rule) == ("change_date", "future")


def test_change_date_may_lie_one_day_ahead_and_a_planned_move_out_fourteen():
    _notice(ChangeReason.MOVE_WITHIN, NAGANO, 1, "2003-01-21")  # 2003-01-20 10:00 JST + 1 day
    with pytest.raises(ValidationError):
        _notice(ChangeReason.MOVE_WITHIN, NAGANO, 1, "2003-01-22")
    _notice(ChangeReason.MOVE_OUT, NAGANO, 1, "2003-02-03")
    with pytest.raises(ValidationError):
        _notice(ChangeReason.MOVE_OUT, NAGANO, 1, "2003-02-04")


def test_change_date_bound_follows_japan_time():
    # 2003-01-20T16:00Z is already the 21st in Japan: the 22nd is within a day.
    late_evening = dt.datetime(2003, 1, 20, 16, 0, tzinfo=UTC)
    notice = _notice(ChangeReason.MOVE_WITHIN, NAGANO, 1, "2003-01-22", at=late_evening)
    assert dataclasses.replace(notice, sequence=2).change_date == dt.date(2003, 1, 22)
