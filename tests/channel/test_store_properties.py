"""Exactly once in effect, against the store itself (moto): whatever arrives in whatever order
— answers, refusals, their redeliveries, the clock passing the deadline, reads that time a
request out — a request ends with the outcome of the first answer that came in time, else
timed out, and is counted once."""

from __future__ import annotations

import datetime as dt
import os

import boto3
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from jukinet.adapters import aws
from jukinet.adapters.channel_store import ChannelStore
from jukinet.domain import channel
from jukinet.domain.channel import Outcome

T0 = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)
NAGANO, MATSUMOTO = "202011", "202029"

events = st.lists(st.one_of(
    st.tuples(st.just("answer"), st.sampled_from([Outcome.ANSWERED, Outcome.REFUSED])),
    st.tuples(st.just("tick"), st.integers(1, 20)),
    st.tuples(st.just("read"), st.none()),
), max_size=12)


@settings(max_examples=30)
@given(events=events, wait=st.integers(1, 30))
def test_a_request_settles_once_whatever_arrives_in_whatever_order(events, wait) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        aws.reset_clients()
        boto3.client("dynamodb", region_name="ap-northeast-1").create_table(
            TableName="cards", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        os.environ["AWS_DEFAULT_REGION"] = "ap-northeast-1"
        store = ChannelStore("cards")
        correlation = channel.new_correlation_id(NAGANO, T0, "a" * 32)
        deadline = T0 + dt.timedelta(seconds=wait)
        assert store.put_request(correlation, MATSUMOTO, deadline, T0, "signed")
        assert not store.put_request(correlation, MATSUMOTO, deadline, T0, "signed")  # recorded once
        now = T0
        expected = None
        for kind, value in events:
            if kind == "tick":
                now += dt.timedelta(seconds=value)
            elif kind == "read":
                store.time_out(correlation, now)
                if expected is None and now > deadline:
                    expected = Outcome.TIMED_OUT
            else:
                settled = store.settle(correlation, value, b"answer", now)
                first_in_time = expected is None and now <= deadline
                assert settled is first_in_time
                if first_in_time:
                    expected = value
        status = store.request(correlation)["status"]["S"]
        final = channel.outcome_of(status, deadline, now)
        assert final is (expected or (Outcome.TIMED_OUT if now > deadline else Outcome.PENDING))
        row = channel.reconcile(NAGANO, "2003-01", store.records(NAGANO, "2003-01"), now)
        assert row.requested == 1 and row.balanced
