"""The special move-out and move-in (domain/special_move.py): any interleaving of the filing, the
certificate requests, the move-in notices, cancellations and the clock passing the legal period
ends in the documented state (a reference model written from docs/second-phase.md part 4); final
states absorb; a repeated event changes nothing; the period in Japan time; the certificate's
whitelist."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.adapters.card_store import registered
from jukinet.domain import special_move as sm
from jukinet.domain.errors import ValidationError
from jukinet.domain.facts import ChangeReason
from jukinet.domain.local_record import ACTIVE, LocalRecord, LocalRecordFields, Relationship
from jukinet.domain.notice import JST, UpdateNotice

A, B, C = "202037", "202053", "202029"
CODE = "24727059608"
SERIAL = "202037-3F9A0C21D4E5B6A7"
FILED = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)  # 10:00 JST
PLANNED = dt.date(2003, 1, 25)


def filed(planned: dt.date = PLANNED, at: dt.datetime = FILED) -> sm.MoveOut:
    return sm.MoveOut(municipality=A, resident_code=CODE, filed_at=at, planned_move_date=planned,
                      destination_address="長野県飯田市追手町2丁目678番地", card_serial=SERIAL, by_post=False,
                      changed_at=at)


# --- the period ---------------------------------------------------------------------------------
def test_the_last_day_is_the_earlier_of_14_days_after_the_move_and_30_after_the_planned_date() -> None:
    assert sm.last_day(PLANNED) == dt.date(2003, 2, 24)
    assert sm.last_day(PLANNED, dt.date(2003, 1, 25)) == dt.date(2003, 2, 8)
    assert sm.last_day(PLANNED, dt.date(2003, 2, 20)) == dt.date(2003, 2, 24)
    # the day ends at midnight in Japan: 15:00 UTC
    assert sm.end_of(dt.date(2003, 2, 8)) == dt.datetime(2003, 2, 8, 15, 0, tzinfo=dt.UTC)
    late = dt.datetime(2003, 2, 8, 14, 59, 59, tzinfo=dt.UTC)
    assert sm.period_refusal(PLANNED, dt.date(2003, 1, 25), late) is None
    assert sm.period_refusal(PLANNED, dt.date(2003, 1, 25), late + dt.timedelta(seconds=1)) is not None
    assert "after today" in sm.period_refusal(PLANNED, dt.date(2003, 1, 21), FILED)


def test_the_planned_date_and_the_move_date_are_checked_in_japan_time() -> None:
    # 2003-01-20 16:00 UTC is already the 21st in Japan
    evening = dt.datetime(2003, 1, 20, 16, 0, tzinfo=dt.UTC)
    assert sm.parse_moved_on("2003-01-21", evening) == dt.date(2003, 1, 21)
    with pytest.raises(ValidationError) as exc:
        sm.parse_moved_on("2003-01-21", FILED)
    assert (exc.value.field, exc.value.rule) == ("moved_on", "range")
    assert sm.parse_planned("2003-01-06", FILED) == dt.date(2003, 1, 6)
    for bad in ("2003-01-05", "2003-02-20"):
        with pytest.raises(ValidationError) as exc:
            sm.parse_planned(bad, FILED)
        assert (exc.value.field, exc.value.rule) == ("planned_move_date", "range")
    with pytest.raises(ValidationError):
        sm.parse_destination("  ")


# --- the transitions, one by one -------------------------------------------------------------------
def test_the_happy_path_and_the_same_events_again() -> None:
    record = filed()
    now = FILED + dt.timedelta(days=5)
    asked = sm.request_certificate(record, requester=B, correlation="c1", card_serial=SERIAL,
                                   moved_on=dt.date(2003, 1, 25), now=now)
    assert asked.state is sm.State.CERTIFICATE_REQUESTED and asked.requester == B and asked.last_day == dt.date(2003, 2, 8)
    assert sm.request_certificate(asked, requester=B, correlation="c2", card_serial=SERIAL,
                                  moved_on=dt.date(2003, 1, 25), now=now) == asked
    done = sm.notify_move_in(asked, requester=B, certificate_correlation="c1", registered_at=now, now=now)
    assert done.state is sm.State.COMPLETED
    assert sm.notify_move_in(done, requester=B, certificate_correlation="c1", registered_at=now, now=now) == done
    assert sm.cancel(done, now).code == "already_moved_in"
    assert sm.request_certificate(done, requester=C, correlation="c3", card_serial=SERIAL,
                                  moved_on=dt.date(2003, 1, 25), now=now).code == "already_moved_in"


def test_refusals() -> None:
    now = FILED + dt.timedelta(days=5)
    kw = {"requester": B, "correlation": "c1", "moved_on": dt.date(2003, 1, 25), "now": now}
    assert sm.request_certificate(None, card_serial=SERIAL, **kw).code == "no_special_move_out"
    assert sm.request_certificate(filed(), card_serial="202037-0000000000000000", **kw).code == "not_this_card"
    assert sm.request_certificate(sm.cancel(filed(), now), card_serial=SERIAL, **kw).code == "cancelled"
    late = {**kw, "now": sm.end_of(dt.date(2003, 2, 24))}
    assert sm.request_certificate(filed(), card_serial=SERIAL, **late).code == "period_expired"
    moved_long_ago = {**kw, "moved_on": dt.date(2003, 1, 6)}  # 14 days after it ended on the 20th
    assert sm.request_certificate(filed(), card_serial=SERIAL, **moved_long_ago).code == "period_expired"
    asked = sm.request_certificate(filed(), card_serial=SERIAL, **kw)
    assert sm.request_certificate(asked, card_serial=SERIAL, **{**kw, "requester": C}).code == \
        "certificate_given_elsewhere"
    assert sm.notify_move_in(asked, requester=C, certificate_correlation="c1", registered_at=now, now=now).code == \
        "no_certificate_request"
    assert sm.notify_move_in(asked, requester=B, certificate_correlation="c9", registered_at=now, now=now).code == \
        "no_certificate_request"
    assert sm.notify_move_in(filed(), requester=B, certificate_correlation="c1", registered_at=now, now=now).code == \
        "no_certificate_request"
    # B cannot date a registration back into the period
    stale = sm.notify_move_in(asked, requester=B, certificate_correlation="c1",
                              registered_at=now - dt.timedelta(hours=1), now=now)
    assert stale.code == "invalid_query"


def test_a_move_in_registered_on_the_last_day_and_told_after_midnight_is_in_time() -> None:
    asked = sm.request_certificate(filed(), requester=B, correlation="c1", card_serial=SERIAL,
                                   moved_on=dt.date(2003, 1, 25), now=FILED + dt.timedelta(days=5))
    end = asked.ends_at
    registered_at = end - dt.timedelta(seconds=20)
    done = sm.notify_move_in(asked, requester=B, certificate_correlation="c1", registered_at=registered_at,
                             now=end + dt.timedelta(seconds=5))
    assert done.state is sm.State.COMPLETED
    lapsed = sm.notify_move_in(asked, requester=B, certificate_correlation="c1", registered_at=end,
                               now=end + dt.timedelta(seconds=5))
    assert lapsed.code == "period_expired"


def test_a_record_lapses_at_the_end_of_its_period() -> None:
    record = filed()
    assert record.state_at(record.ends_at - dt.timedelta(microseconds=1)) is sm.State.FILED
    assert record.state_at(record.ends_at) is sm.State.EXPIRED
    asked = sm.request_certificate(record, requester=B, correlation="c1", card_serial=SERIAL,
                                   moved_on=dt.date(2003, 1, 25), now=FILED + dt.timedelta(days=5))
    assert asked.state_at(asked.ends_at) is sm.State.NOT_MOVED_IN
    written = asked.expired(asked.ends_at + dt.timedelta(days=3))
    assert (written.state, written.changed_at) == (sm.State.NOT_MOVED_IN, asked.ends_at)


# --- any interleaving ---------------------------------------------------------------------------------
EVENTS = st.lists(st.one_of(
    st.tuples(st.just("request"), st.sampled_from([B, C]), st.integers(-20, 6), st.booleans()),
    st.tuples(st.just("notice"), st.sampled_from([B, C]), st.booleans()),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("tick")),
), max_size=10)
GAPS = st.lists(st.integers(0, 20 * 24), min_size=10, max_size=10)  # hours between events


def run(events, gaps, *, with_filing: bool):
    """Apply the events in order (times growing by ``gaps``); the record and what each answered."""
    record = filed() if with_filing else None
    now = FILED
    answers = []
    correlations = {B: f"{B}-c", C: f"{C}-c"}
    for event, gap in zip(events, gaps, strict=False):
        now = now + dt.timedelta(hours=gap)
        if record is not None:
            record = record.expired(now)  # what any touch writes first
        if event[0] == "request":
            _, who, moved, right_card = event
            out = sm.request_certificate(record, requester=who, correlation=correlations[who],
                                         card_serial=SERIAL if right_card else "202037-FFFFFFFFFFFFFFFF",
                                         moved_on=sm._day(now) + dt.timedelta(days=min(moved, 0)), now=now)
        elif event[0] == "notice":
            _, who, right = event
            out = sm.notify_move_in(record, requester=who,
                                    certificate_correlation=correlations[who] if right else "other",
                                    registered_at=now, now=now)
        elif event[0] == "cancel":
            out = sm.cancel(record, now)
        else:
            out = record
        answers.append(out)
        if isinstance(out, sm.MoveOut):
            record = out
    return record, now, answers


def reference(events, gaps) -> tuple[sm.State, str]:
    """The documented end state (docs/second-phase.md, part 4), restated independently: the
    first decisive event wins — a cancellation while open; a notice by the municipality that got
    the certificate (same request) before the end; the end of the period passing (expired, or
    not moved in if a certificate was given); a certificate goes to the first municipality that
    asks with the right card within the period, and shortens the period to 14 days after its
    move date."""
    planned_end = sm.end_of(PLANNED + dt.timedelta(days=30))
    end, holder, state = planned_end, "", sm.State.FILED
    now = FILED
    for event, gap in zip(events, gaps, strict=False):
        now = now + dt.timedelta(hours=gap)
        if state in (sm.State.FILED, sm.State.CERTIFICATE_REQUESTED) and now >= end:
            state = sm.State.NOT_MOVED_IN if holder else sm.State.EXPIRED
        if state not in (sm.State.FILED, sm.State.CERTIFICATE_REQUESTED):
            continue
        if event[0] == "cancel":
            state = sm.State.CANCELLED
        elif event[0] == "request":
            _, who, moved, right_card = event
            moved_on = now.astimezone(JST).date() + dt.timedelta(days=min(moved, 0))
            move_end = sm.end_of(moved_on + dt.timedelta(days=14))
            if right_card and (not holder or holder == who) and now < min(planned_end, move_end):
                holder, end, state = who, min(planned_end, move_end), sm.State.CERTIFICATE_REQUESTED
        elif event[0] == "notice":
            _, who, right = event
            if holder == who and right:
                state = sm.State.COMPLETED
    if state in (sm.State.FILED, sm.State.CERTIFICATE_REQUESTED) and now >= end:
        state = sm.State.NOT_MOVED_IN if holder else sm.State.EXPIRED
    return state, holder


@settings(max_examples=400, deadline=None)
@given(EVENTS, GAPS)
def test_any_interleaving_ends_in_the_documented_state(events, gaps) -> None:
    record, now, answers = run(events, gaps, with_filing=True)
    state, holder = reference(events, gaps)
    assert record.state_at(now) is state
    if state in (sm.State.COMPLETED, sm.State.NOT_MOVED_IN, sm.State.CERTIFICATE_REQUESTED):
        assert record.requester == holder
    # after the end of the period nothing stays open
    assert record.state_at(max(now, record.ends_at)).final
    # final states absorb: whatever came after a final answer changed nothing
    finals = [i for i, a in enumerate(answers) if isinstance(a, sm.MoveOut) and a.state.final]
    if finals:
        first = answers[finals[0]]
        assert all(a.state is first.state for a in answers[finals[0]:] if isinstance(a, sm.MoveOut))
        assert record.state is first.state
    # completed only after this municipality got the certificate, before the period's end
    if record.state is sm.State.COMPLETED:
        assert record.changed_at < record.ends_at


@settings(max_examples=200, deadline=None)
@given(EVENTS, GAPS)
def test_every_event_delivered_twice_gives_the_same_end(events, gaps) -> None:
    twice = [e for e in events for _ in (0, 1)]
    gaps2 = [g for gap in gaps for g in (gap, 0)]
    once, now1, _ = run(events, gaps, with_filing=True)
    doubled, now2, _ = run(twice, gaps2 + [0] * len(twice), with_filing=True)
    assert now1 == now2
    assert doubled.state_at(now2) is once.state_at(now1)
    assert (doubled.requester, doubled.certificate_correlation) == (once.requester, once.certificate_correlation)


@settings(max_examples=100, deadline=None)
@given(EVENTS, GAPS)
def test_without_a_filing_everything_is_refused(events, gaps) -> None:
    record, _, answers = run(events, gaps, with_filing=False)
    assert record is None
    assert all(a is None or a.code == "no_special_move_out" for a in answers)


# --- the notices upward: 転出 at A and 特例転入 at B in either order ---------------------------------
def _notice(municipality: str, reason: str, sequence: int, day: str) -> UpdateNotice:
    raw = {"municipality": municipality, "sequence": sequence, "resident_code": CODE, "reason": reason,
           "change_date": day, "notice_time": f"{day}T03:00:00Z"}
    if reason != "21":
        raw["facts"] = {"resident_code": CODE, "name": {"kanji": "信濃太郎", "kana": "シナノタロウ"},
                        "birth_date": "1970-01-01", "sex": "1", "address": "長野県飯田市追手町2丁目678番地"}
    return UpdateNotice.from_dict(raw)


@given(st.permutations([0, 1]), st.booleans())
def test_the_move_out_and_the_special_move_in_give_the_new_municipality_whatever_their_order(order, same_day):
    out = _notice(A, "21", 7, "2003-01-25")
    into = _notice(B, "12", 3, "2003-01-25" if same_day else "2003-01-27")
    notices = [(out, ChangeReason.MOVE_OUT, ""), (into, ChangeReason.SPECIAL_MOVE_IN, "")]
    state, _ = registered(None, [notices[i] for i in order])
    assert (state["municipality"], state["reason"]) == (B, "12")
    first, _ = registered(None, [notices[order[0]]])
    item = {"pk": {"S": "RESIDENT#x"}, **{k: {"S": v} for k, v in first.items()}}
    later, _ = registered(item, [notices[order[1]]])
    assert later == state


# --- the certificate information ----------------------------------------------------------------------
def test_the_certificate_is_the_whitelist_with_the_domicile_and_without_the_individual_number() -> None:
    local = LocalRecord(
        municipality=A, resident_code=CODE, status=ACTIVE, reason=ChangeReason.MOVE_IN, change_date=dt.date(2002, 4, 1),
        facts={"resident_code": CODE, "name": {"kanji": "信濃太郎", "kana": "シナノタロウ"}, "birth_date": "1970-01-01",
               "sex": "1", "address": "長野県上田市大手1丁目", "individual_number": "123456789018"},
        local=LocalRecordFields(household_number="1001", householder_name="信濃太郎", relationship=Relationship.HEAD,
                                resident_since=dt.date(2002, 4, 1), address_since=dt.date(2002, 4, 1),
                                previous_address="東京都千代田区", registered_domicile="長野県上田市大手1丁目1番",
                                family_register_head="信濃太郎"),
        last_notice_id="n")
    cert = sm.certificate(filed(), local)
    assert set(cert) <= set(sm.CERTIFICATE_FIELDS)
    assert "123456789018" not in str(cert) and "previous_address" not in cert
    assert cert["registered_domicile"] == "長野県上田市大手1丁目1番" and cert["card_serial"] == SERIAL
    assert cert["planned_move_date"] == "2003-01-25" and cert["filed_on"] == "2003-01-20"
    assert sm.check_certificate({"certificate": cert}, CODE, A) == cert
    for bad in ({"certificate": {**cert, "individual_number": "123456789018"}},
                {"certificate": {**cert, "resident_code": "38216000957"}}, {"rows": []},
                {"certificate": {k: v for k, v in cert.items() if k != "name"}}):
        with pytest.raises(ValidationError):
            sm.check_certificate(bad, CODE, A)


def test_the_queries_round_trip_and_are_checked() -> None:
    query = sm.CertificateQuery(CODE, SERIAL, "a" * 32, dt.date(2003, 1, 25), "arn:…/clerk")
    assert sm.CertificateQuery.parse(query.to_dict()) == query
    notice = sm.NoticeQuery(CODE, f"{B}-200301-{'b' * 32}", FILED, "arn:…/clerk")
    assert sm.NoticeQuery.parse(notice.to_dict()) == notice
    with pytest.raises(ValidationError):
        sm.CertificateQuery.parse({**query.to_dict(), "challenge_id": "short"})
    with pytest.raises(ValidationError):
        sm.NoticeQuery.parse({**notice.to_dict(), "registered_at": "yesterday"})
