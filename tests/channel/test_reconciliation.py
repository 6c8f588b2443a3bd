"""The channel's rows in the reconciliation (decision 0047): per requesting municipality and
month, requested = answered + refused + timed out + pending, whatever the interleaving; the
answering side's counts beside them; and the prefecture's nightly run reporting them (Markdown
section, CSV) and counting a row that does not balance in ``ReconciliationMismatches``."""

from __future__ import annotations

import csv
import datetime as dt
import io

import boto3
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.domain import channel
from jukinet.domain.channel import ChannelRow, Outcome, RequestRecord
from jukinet.services.reconciliation import CountSource, ScheduledReconciliation, channel_rows

from .world import CHIYODA, MATSUMOTO, NAGANO, NAGANO_PREF, REGION, T0, TOKYO_PREF, World, resident

# --- the domain: any interleaving balances ------------------------------------------------------

request_events = st.lists(st.tuples(
    st.integers(1, 600),                                             # the request's wait (s)
    st.lists(st.one_of(                                               # what happens to it, in order
        st.tuples(st.just("answer"), st.sampled_from([channel.Kind.ANSWER, channel.Kind.REFUSAL])),
        st.tuples(st.just("tick"), st.integers(1, 400)),
        st.tuples(st.just("read"), st.none())), max_size=8)), max_size=12)


@settings(max_examples=200)
@given(requests=request_events, look=st.integers(0, 1200))
def test_requested_equals_answered_refused_timed_out_pending_for_any_interleaving(requests, look) -> None:
    records = []
    for i, (wait, events) in enumerate(requests):
        deadline = T0 + dt.timedelta(seconds=wait)
        status, now = Outcome.PENDING.value, T0
        for kind, value in events:
            if kind == "tick":
                now += dt.timedelta(seconds=value)
            elif kind == "read" and channel.outcome_of(status, deadline, now) is Outcome.TIMED_OUT:
                status = Outcome.TIMED_OUT.value  # ChannelStore.time_out
            elif kind == "answer":
                settled = channel.settle(status, deadline, now, value)
                status = settled.value if settled else status
        correlation = channel.new_correlation_id(NAGANO, T0, f"{i:032x}")
        records += [RequestRecord(correlation, NAGANO, MATSUMOTO, deadline, status)] * 2  # a record read twice
    at = T0 + dt.timedelta(seconds=look)
    row = channel.reconcile(NAGANO, "2003-01", records, at)
    assert row.requested == len(requests)
    assert row.requested == row.answered + row.refused + row.timed_out + row.pending
    assert row.balanced and row.problems == []
    # Nothing is pending once every deadline has passed: it was answered, refused or timed out.
    if all(at > T0 + dt.timedelta(seconds=wait) for wait, _ in requests):
        assert row.pending == 0


def test_a_request_in_no_outcome_is_a_mismatch() -> None:
    deadline = T0 + dt.timedelta(seconds=30)
    records = [RequestRecord(channel.new_correlation_id(NAGANO, T0, f"{i:032x}"), NAGANO, MATSUMOTO, deadline, s)
               for i, s in enumerate(["answered", "refused", "pending", "lost-somewhere"])]
    row = channel.reconcile(NAGANO, "2003-01", records, T0 + dt.timedelta(minutes=1))
    assert (row.requested, row.answered, row.refused, row.timed_out, row.pending, row.unaccounted) == (4, 1, 1, 1, 0, 1)
    assert not row.balanced
    assert row.problems == ["channel: 1 request(s) neither answered, refused nor timed out after the deadline "
                            "(state unreadable)"]
    # A hand-made row whose counts do not add up names the equation.
    assert ChannelRow(NAGANO, "2003-01", 3, 1, 1, 0, 0).problems == [
        "channel: requested 3 ≠ answered 1 + refused 1 + timed out 0 + pending 0"]


def test_the_report_section_lists_mismatches_first_and_only_municipalities_with_traffic() -> None:
    rows = [ChannelRow(NAGANO, "2003-01", 2, 1, 0, 1, 0, answers_given=3, name="長野市"),
            ChannelRow(MATSUMOTO, "2003-01", 0, 0, 0, 0, 0, name="松本市"),
            ChannelRow("202037", "2003-01", 2, 1, 0, 0, 0, unaccounted=1, name="上田市")]
    text = "\n".join(channel.rows_as_markdown(rows))
    assert "**Mismatches: 1.** Municipality-months with traffic: 2 of 3." in text
    assert "- 2003-01 202037 上田市: channel: 1 request(s) neither answered" in text
    assert "| 2003-01 | 202011 | 長野市 | 2 | 1 | 0 | 1 | 0 | 3 | 0 | balanced |" in text
    assert "松本市" not in text
    parsed = list(csv.DictReader(io.StringIO(channel.rows_as_csv(rows))))
    assert [r["municipality"] for r in parsed] == [NAGANO, MATSUMOTO, "202037"]
    assert parsed[0]["timed_out"] == "1" and parsed[0]["answers_given"] == "3" and parsed[0]["balanced"] == "true"
    assert parsed[2]["balanced"] == "false" and parsed[2]["problems"].startswith("channel: 1 request(s)")


# --- the store: rows read from the municipality tier's table --------------------------------------

def _traffic(world: World) -> str:
    """長野市: 2 answered (one across prefectures), 1 refused, 1 lost (times out); 松本市 answers
    one and refuses one as home. Returns the lost request's correlation id."""
    world.register(resident(41), MATSUMOTO)
    world.register(resident(42), CHIYODA)
    nagano = world.endpoint(NAGANO_PREF)
    query = {"query": "resident-status"}
    nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(41)})
    nagano.request(NAGANO, CHIYODA, {**query, "resident_code": resident(42)})
    nagano.request(NAGANO, MATSUMOTO, {**query, "resident_code": resident(49)})  # unknown: refused
    world.pump()
    lost = nagano.request(NAGANO, CHIYODA, {**query, "resident_code": resident(42)}, wait=dt.timedelta(seconds=5))
    world.pump(drop={"national"})
    return lost


def test_channel_rows_read_both_sides_from_the_tier_table(world: World) -> None:
    _traffic(world)
    names = {NAGANO: "長野市", MATSUMOTO: "松本市"}
    during = channel_rows(channel_table=f"jukinet-cards-{NAGANO_PREF}", municipalities=names, month="2003-01",
                          now=world.now)
    assert [r.to_dict() for r in during] == [
        {"municipality": NAGANO, "month": "2003-01", "requested": 4, "answered": 2, "refused": 1, "timed_out": 0,
         "pending": 1, "unaccounted": 0, "answers_given": 0, "refusals_given": 0, "balanced": True},
        {"municipality": MATSUMOTO, "month": "2003-01", "requested": 0, "answered": 0, "refused": 0, "timed_out": 0,
         "pending": 0, "unaccounted": 0, "answers_given": 1, "refusals_given": 1, "balanced": True}]
    after = channel_rows(channel_table=f"jukinet-cards-{NAGANO_PREF}", municipalities=names, month="2003-01",
                         now=world.now + dt.timedelta(seconds=6))
    assert (after[0].timed_out, after[0].pending, after[0].name) == (1, 0, "長野市")
    tokyo = channel_rows(channel_table=f"jukinet-cards-{TOKYO_PREF}", municipalities={CHIYODA: "千代田区"},
                         month="2003-01", now=world.now)
    assert (tokyo[0].requested, tokyo[0].answers_given, tokyo[0].refusals_given) == (0, 1, 0)


# --- the prefecture's nightly run -----------------------------------------------------------------

def _nightly(world: World, tier: str = "prefecture") -> ScheduledReconciliation:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
    world._table("jukinet-cs-20")
    from jukinet.adapters.reports import ReportStore
    source = CountSource("jukinet-cs-20", {NAGANO: "長野市", MATSUMOTO: "松本市"},
                         prefecture_table=f"jukinet-pref-{NAGANO_PREF}" if tier == "national" else "",
                         channel_table=f"jukinet-cards-{NAGANO_PREF}")
    return ScheduledReconciliation(tier=tier, table=f"jukinet-pref-{NAGANO_PREF}" if tier == "prefecture"
                                   else "jukinet-national", sources=[source], reports=ReportStore("reports"),
                                   clock=lambda: world.now, tier_name="pref-200000" if tier == "prefecture"
                                   else "national")


def _object(key: str) -> str:
    bucket, _, name = key.removeprefix("s3://").partition("/")
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=name)["Body"].read().decode()


def test_the_nightly_report_has_a_channel_section_and_a_channel_csv(world: World) -> None:
    _traffic(world)
    at = dt.datetime(2003, 1, 20, 16, 30, tzinfo=dt.UTC)  # 01:30 JST on the 21st: 2003-01 and 2002-12
    run = _nightly(world).run(at)
    assert run.months == ["2002-12", "2003-01"]
    assert [(r.month, r.municipality) for r in run.channel] == [
        ("2002-12", NAGANO), ("2002-12", MATSUMOTO), ("2003-01", NAGANO), ("2003-01", MATSUMOTO)]
    assert run.channel_mismatches == []
    markdown = _object(run.keys[0])
    # The notice rows keep their format; the channel section follows them.
    assert markdown.index("## Every municipality") < markdown.index("## Channel between municipalities")
    assert "| 2003-01 | 202011 | 長野市 | 4 | 2 | 1 | 1 | 0 | 0 | 0 | balanced |" in markdown
    assert "| 2003-01 | 202029 | 松本市 | 0 | 0 | 0 | 0 | 0 | 1 | 1 | balanced |" in markdown
    assert run.keys[2].endswith("reconciliation/2003-01-20-channel.csv")
    rows = list(csv.DictReader(io.StringIO(_object(run.keys[2]))))
    assert [(r["month"], r["municipality"], r["requested"], r["timed_out"]) for r in rows][2] == (
        "2003-01", NAGANO, "4", "1")
    notice_csv = _object(run.keys[1])
    assert notice_csv.splitlines()[0].startswith("month,municipality,name,sent,rejected")


def test_a_request_in_no_outcome_counts_as_a_mismatch_of_the_prefecture(world: World, monkeypatch) -> None:
    lost = _traffic(world)
    requester, month = channel.correlation_owner(lost)
    world.ddb.update_item(TableName=f"jukinet-cards-{NAGANO_PREF}",
                          Key={"pk": {"S": f"CHANNEL#{requester}#{month}"}, "sk": {"S": f"OUT#{lost}"}},
                          UpdateExpression="SET #s = :x", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":x": {"S": "stuck"}})
    emitted = []
    from jukinet.services import reconciliation as module
    monkeypatch.setattr(module.metrics, "add_metric", lambda **kw: emitted.append(kw))
    run = _nightly(world).run(dt.datetime(2003, 1, 20, 16, 30, tzinfo=dt.UTC))
    assert [(c.municipality, c.month) for c in run.channel_mismatches] == [(NAGANO, "2003-01")]
    assert emitted == [{"name": "ReconciliationMismatches", "unit": module.MetricUnit.Count, "value": 1}]
    assert "- 2003-01 202011 長野市: channel: 1 request(s) neither answered, refused nor timed out" in \
        _object(run.keys[0])


def test_the_national_tier_has_no_channel_rows(world: World) -> None:
    _traffic(world)
    run = _nightly(world, "national").run(dt.datetime(2003, 1, 20, 16, 30, tzinfo=dt.UTC))
    assert run.channel == [] and len(run.keys) == 2


# --- jukinet reconcile ------------------------------------------------------------------------------

def test_jukinet_reconcile_prints_the_channel_rows_with_traffic_and_a_summary_line() -> None:
    import json

    from rich.console import Console

    from jukinet_ops.report import print_channel, reconciliation_json

    rows = [ChannelRow(NAGANO, "2003-01", 4, 2, 1, 1, 0, answers_given=0, name="長野市"),
            ChannelRow(MATSUMOTO, "2003-01", 0, 0, 0, 0, 0, answers_given=1, refusals_given=1, name="松本市"),
            ChannelRow("202037", "2003-01", 0, 0, 0, 0, 0, name="上田市")]
    console = Console(file=io.StringIO(), width=200)
    print_channel(rows, "2003-01", console)
    out = console.file.getvalue()
    assert "長野市" in out and "松本市" in out and "上田市" not in out  # only municipalities with traffic
    assert out.rstrip().splitlines()[-1] == (
        "channel 2003-01: 4 requested — 2 answered, 1 refused, 1 timed out, 0 pending; as home 1 answers, "
        "1 refusals given; every request answered, refused, timed out or pending")
    bad = [*rows, ChannelRow("202045", "2003-01", 1, 0, 0, 0, 0, unaccounted=1, name="飯田市")]
    console = Console(file=io.StringIO(), width=200)
    print_channel(bad, "2003-01", console, only_problems=True)
    out = console.file.getvalue()
    assert "飯田市" in out and "長野市" not in out and "1 municipality row(s) MISMATCH" in out
    document = json.loads(reconciliation_json([], "2003-01", bad))
    assert document["channel"][3]["problems"] and document["channel"][0]["timed_out"] == 1
    assert "channel" not in json.loads(reconciliation_json([], "2003-01"))
