"""The tier's register of residents as the CSs write it (``ResidentRegister.record``): batched
reads and transactions (issue 13), the same state whatever order and batches the notices
come in, and concurrent CSs."""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from jukinet.adapters import aws
from jukinet.adapters.card_store import CardStore, ResidentRegister, registered
from jukinet.domain.codes import ResidentCode

from .world import MATSUMOTO, NAGANO, World, notice



def code(n: int) -> str:
    return ResidentCode.from_body(f"{n:010d}").value


CODES = [code(1000000001), code(1000000002), code(1000000003)]
REASONS = ["11", "13", "21", "22", "23", "31", "34"]
DAYS = ["2026-11-18", "2026-11-19", "2026-11-20"]


def _item(world: World, code: str) -> dict:
    item = world.ddb.get_item(TableName=world.table, Key={"pk": {"S": f"RESIDENT#{code}"}, "sk": {"S": "REGISTER"}},
                              ConsistentRead=True).get("Item")
    return {k: v["S"] for k, v in (item or {}).items() if k not in ("pk", "sk")}


def _expected(notices: list) -> dict[str, dict]:
    """The model, written the plain way: the notice with the greatest order key gives the
    state; the ending notice with the greatest order key gives ``ended_at``."""
    out: dict[str, dict] = {}
    for resident in {n.resident_code.value for n in notices}:
        mine = [n for n in notices if n.resident_code.value == resident]
        last = max(mine, key=lambda n: n.order_key)
        ending = {"22": "death", "23": "deleted_by_authority"}
        state = {"municipality": last.municipality.value, "reason": last.reason.value, "order_key": last.order_key,
                 "ended": ending.get(last.reason.value, "")}
        endings = [n for n in mine if n.reason.value in ending]
        if endings:
            e = max(endings, key=lambda n: n.order_key)
            state |= {"last_ending": ending[e.reason.value], "ending_key": e.order_key}
        out[resident] = state
    return out


notice_specs = st.lists(st.tuples(st.sampled_from(CODES), st.sampled_from(REASONS), st.sampled_from(DAYS),
                                  st.sampled_from([NAGANO, MATSUMOTO])), min_size=1, max_size=12)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=notice_specs, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 12), max_size=4))
def test_the_register_is_the_same_whatever_order_and_batches_the_notices_come_in(monkeypatch, specs, order, cuts):
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    notices = [notice(m, seq, code, reason, day) for seq, (code, reason, day, m) in enumerate(specs, start=1)]
    shuffled = list(notices)
    order.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *[c for c in cuts if c < len(shuffled)]})
    with mock_aws():
        aws.reset_clients()
        world = World()
        for a, b in zip(bounds, bounds[1:], strict=False):
            world.register(*shuffled[a:b])
        for resident, want in _expected(notices).items():
            got = _item(world, resident)
            assert {k: got.get(k) for k in want} == want, resident
            if "ending_key" not in want:
                assert "ended_at" not in got
    aws.reset_clients()


def test_a_death_that_arrives_after_a_later_notice_still_ends_cards_issued_before_it(world) -> None:
    death = notice(NAGANO, 1, CODES[0], "22", "2026-11-18")
    later = notice(NAGANO, 2, CODES[0], "14", "2026-11-20")  # 職権記載 after it
    world.register(later)
    world.register(death)
    register = world.store().register(CODES[0])
    assert register.reason.value == "14" and register.ended == ""
    assert register.ended_at == death.notice_time and register.last_ending == "death"


def test_a_code_change_ends_the_old_code(world) -> None:
    world.register(notice(NAGANO, 1, CODES[0], "11"))
    world.register(notice(NAGANO, 2, CODES[1], "33", "2026-11-21", previous=CODES[0]))
    assert world.store().register(CODES[0]).last_ending == "code_changed"
    assert world.store().register(CODES[1]).ended == ""


def test_a_thousand_notices_take_about_two_requests_per_hundred_residents(world) -> None:
    calls: list[str] = []
    stop = aws.observe_calls(lambda service, operation: calls.append(f"{service}:{operation}"))
    try:
        notices = [notice(NAGANO, i, code(2000000000 + i), "11") for i in range(1, 1001)]
        moved = ResidentRegister(world.table).record(notices)
    finally:
        stop()
    assert moved == 1000
    dynamodb = [c for c in calls if c.startswith("dynamodb")]
    assert dynamodb.count("dynamodb:BatchGetItem") == 10
    assert dynamodb.count("dynamodb:TransactWriteItems") == 10
    assert len(dynamodb) == 20
    # The same file again (a CS retry): read, nothing to write.
    calls.clear()
    stop = aws.observe_calls(lambda service, operation: calls.append(f"{service}:{operation}"))
    try:
        assert ResidentRegister(world.table).record(notices) == 0
    finally:
        stop()
    assert [c for c in calls if c.startswith("dynamodb")] == ["dynamodb:BatchGetItem"] * 10


def test_two_cs_writing_the_same_residents_at_once_keep_the_newest(world) -> None:
    """A move within the prefecture: 長野市's 転出 and 松本市's 転入 of the same residents,
    written at the same moment by two CSs. Each item ends at the notice with the greater
    order key, whichever transaction came first (a lost condition is read again)."""
    codes = [code(3000000000 + i) for i in range(150)]
    out = [notice(NAGANO, i, c, "21", "2026-11-19") for i, c in enumerate(codes, start=1)]
    into = [notice(MATSUMOTO, i, c, "11", "2026-11-19") for i, c in enumerate(codes, start=1)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(batch) -> None:
        try:
            barrier.wait()
            ResidentRegister(world.table).record(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in (out, into)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for resident, a, b in zip(codes, out, into, strict=True):
        newest = max(a, b, key=lambda n: n.order_key)
        assert _item(world, resident)["order_key"] == newest.order_key


def test_registered_is_pure_and_reports_nothing_to_write_for_an_old_notice() -> None:
    new = notice(NAGANO, 2, CODES[0], "31", "2026-11-20")
    old = notice(NAGANO, 1, CODES[0], "34", "2026-11-19")
    state, applied = registered(None, [(new, new.reason, "")])
    assert applied == 1 and state["order_key"] == new.order_key
    item = {k: {"S": v} for k, v in state.items()}
    assert registered(item, [(old, old.reason, "")]) == (state, 0)


def test_the_card_store_reads_what_the_register_wrote(world) -> None:
    world.register(notice(NAGANO, 1, CODES[2], "11"))
    register = CardStore(world.table).register(CODES[2])
    assert register.municipality == NAGANO and register.active
