"""The channel's envelope, correlation ids, deadlines, outcomes and reconciliation (no AWS)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain import channel
from jukinet.domain.channel import Envelope, Kind, Outcome, RequestRecord
from jukinet.domain.codes import LocalGovernmentCode
from jukinet.domain.errors import ValidationError

T0 = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)
NAGANO, MATSUMOTO, CHIYODA = "202011", "202029", "131016"

municipalities = st.builds(
    lambda p, m: LocalGovernmentCode.from_body(f"{p:02d}{m:03d}").value,
    st.integers(1, 47), st.integers(1, 999))
instants = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 1, 1), timezones=st.just(dt.UTC)).map(
    lambda t: t.replace(microsecond=0))


def _envelope(kind=Kind.REQUEST, sender=NAGANO, recipient=MATSUMOTO, sent=T0, wait=30, correlation=None):
    requester = sender if kind is Kind.REQUEST else recipient
    correlation = correlation or channel.new_correlation_id(requester, sent, "0" * 32)
    return Envelope(kind, sender, recipient, correlation, sent, sent + dt.timedelta(seconds=wait), b"k", b"sealed")


@given(kind=st.sampled_from(Kind), pair=st.tuples(municipalities, municipalities).filter(lambda p: p[0] != p[1]),
       sent=instants, wait=st.integers(0, 600), key=st.binary(min_size=1, max_size=200),
       body=st.binary(min_size=1, max_size=2000))
def test_an_envelope_reads_back_as_written(kind, pair, sent, wait, key, body) -> None:
    sender, recipient = pair
    requester = sender if kind is Kind.REQUEST else recipient
    envelope = Envelope(kind, sender, recipient, channel.new_correlation_id(requester, sent), sent,
                        sent + dt.timedelta(seconds=wait), key, body)
    data = envelope.to_bytes()
    assert channel.is_channel_payload(data)
    assert Envelope.from_bytes(data) == envelope


@pytest.mark.parametrize(("change", "field", "rule"), [
    ({"channel": 2}, "channel.channel", "version"),
    ({"kind": "notice"}, "channel.kind", "enum"),
    ({"from": "202012"}, "channel.from", "check_digit"),
    ({"to": "200000"}, "channel.to", "municipality"),
    ({"to": NAGANO}, "channel.to", "consistency"),
    ({"correlation": "x"}, "channel.correlation", "format"),
    ({"correlation": f"{MATSUMOTO}-200301-{'0' * 32}"}, "channel.correlation", "consistency"),
    ({"deadline": "2003-01-20T00:59:59Z"}, "channel.deadline", "range"),
    ({"deadline": "2003-01-20T01:10:01Z"}, "channel.deadline", "range"),
    ({"sent": "yesterday"}, "channel.sent", "format"),
    ({"body": "not base64!"}, "channel.body", "format"),
    ({"key": ""}, "channel.body", "required"),
])
def test_a_bad_envelope_names_its_field_and_rule(change: dict, field: str, rule: str) -> None:
    raw = json.loads(_envelope().to_bytes())
    raw.update(change)
    with pytest.raises(ValidationError) as refused:
        Envelope.from_bytes(json.dumps(raw).encode())
    assert (refused.value.field, refused.value.rule) == (field, rule)


def test_an_envelope_is_bounded_before_it_is_parsed() -> None:
    with pytest.raises(ValidationError) as refused:
        Envelope.from_bytes(b"{" + b" " * channel.MAX_ENVELOPE_BYTES + b"}")
    assert refused.value.rule == "size"
    with pytest.raises(ValidationError) as deep:
        Envelope.from_bytes(b"[" * 100 + b"]" * 100)
    assert deep.value.rule == "depth"


@given(sender=municipalities, now=instants)
def test_a_correlation_id_names_its_requester_and_month_in_japan(sender: str, now: dt.datetime) -> None:
    correlation = channel.new_correlation_id(sender, now)
    assert channel.correlation_owner(correlation) == (sender, now.astimezone(channel.JST).strftime("%Y-%m"))
    assert channel.new_correlation_id(sender, now) != correlation


def test_the_month_of_a_correlation_id_is_japans() -> None:
    # 2003-01-31 15:30 UTC is already February in Japan.
    correlation = channel.new_correlation_id(NAGANO, dt.datetime(2003, 1, 31, 15, 30, tzinfo=dt.UTC))
    assert channel.correlation_owner(correlation) == (NAGANO, "2003-02")


@given(wait=st.integers(0, 600), after=st.integers(-700, 700))
def test_a_message_past_its_deadline_is_refused_as_expired(wait: int, after: int) -> None:
    envelope = _envelope(wait=wait)
    now = T0 + dt.timedelta(seconds=after)
    if after > wait:
        with pytest.raises(ValidationError) as refused:
            channel.check_timely(envelope, now)
        assert (refused.value.field, refused.value.rule) == ("channel.deadline", "expired")
    elif T0 > now + channel.MAX_CLOCK_SKEW:
        with pytest.raises(ValidationError, match="future"):
            channel.check_timely(envelope, now)
    else:
        channel.check_timely(envelope, now)


@given(wait=st.integers(1, 600), arrival=st.integers(0, 1200), kind=st.sampled_from([Kind.ANSWER, Kind.REFUSAL]),
       first=st.sampled_from(Outcome))
def test_an_answer_settles_a_pending_request_once_and_only_in_time(wait, arrival, kind, first) -> None:
    deadline = T0 + dt.timedelta(seconds=wait)
    now = T0 + dt.timedelta(seconds=arrival)
    settled = channel.settle(first.value, deadline, now, kind)
    if first is Outcome.PENDING and arrival <= wait:
        assert settled is (Outcome.ANSWERED if kind is Kind.ANSWER else Outcome.REFUSED)
        # A redelivery of the same answer, or another answer, changes nothing afterwards.
        assert channel.settle(settled.value, deadline, now, kind) is None
    else:
        assert settled is None
    assert channel.outcome_of(first.value, deadline, now) is (
        Outcome.TIMED_OUT if first is Outcome.PENDING and arrival > wait else first)


def test_deadlines_are_bounded() -> None:
    assert channel.deadline_for(T0) == T0 + channel.DEFAULT_DEADLINE
    for wait in (dt.timedelta(0), channel.MAX_DEADLINE + dt.timedelta(seconds=1)):
        with pytest.raises(ValidationError, match="range"):
            channel.deadline_for(T0, wait)


@given(st.lists(st.tuples(st.sampled_from(Outcome), st.integers(-60, 60), st.integers(0, 5)), max_size=40),
       st.integers(0, 3))
def test_reconciliation_counts_every_request_once_under_one_outcome(specs, repeat) -> None:
    records = []
    for i, (status, offset, _) in enumerate(specs):
        correlation = channel.new_correlation_id(NAGANO, T0, f"{i:032x}")
        records.append(RequestRecord(correlation, NAGANO, MATSUMOTO, T0 + dt.timedelta(seconds=offset), status.value))
    others = [RequestRecord(channel.new_correlation_id(CHIYODA, T0, f"{i:032x}"), CHIYODA, NAGANO, T0, "answered")
              for i in range(3)]
    row = channel.reconcile(NAGANO, "2003-01", records * (repeat + 1) + others, T0)
    assert row.requested == len(specs)
    assert row.balanced
    assert row.pending == sum(1 for s, off, _ in specs if s is Outcome.PENDING and off >= 0)
    assert row.timed_out == sum(1 for s, off, _ in specs
                                if s is Outcome.TIMED_OUT or (s is Outcome.PENDING and off < 0))
    assert row.answered == sum(1 for s, _, _ in specs if s is Outcome.ANSWERED)


@given(recipient=municipalities, here=st.integers(1, 47))
def test_routing_goes_down_in_the_prefecture_and_up_otherwise(recipient: str, here: int) -> None:
    prefecture = LocalGovernmentCode.prefecture(f"{here:02d}").value
    expected = "municipalities" if recipient[:2] == prefecture[:2] else "national"
    assert channel.route("prefecture", prefecture, recipient) == expected
    national = channel.route("national", "national", recipient)
    assert national[:2] == recipient[:2] and LocalGovernmentCode.parse(national).is_prefecture


def test_the_encryption_context_binds_kind_correlation_and_both_municipalities() -> None:
    correlation = channel.new_correlation_id(NAGANO, T0, "1" * 32)
    assert channel.encryption_context(Kind.ANSWER, correlation, MATSUMOTO, NAGANO) == {
        "channel": "answer", "correlation": correlation, "from": MATSUMOTO, "to": NAGANO}
    contexts = {channel.aad(k, correlation, a, b) for k in Kind for a, b in ((NAGANO, MATSUMOTO), (MATSUMOTO, NAGANO))}
    assert len(contexts) == 6
