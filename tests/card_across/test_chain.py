"""``check_chain`` (decision 0050) as a property: a card's chain built across tiers — issued in
長野県, events there, moved to 東京都 (signed by 長野県's key), events there — verifies in any order
of arrival; altering any field of any event, dropping one, or signing one with the other tier's
key is refused. Local P-256 keys stand in for the tiers' card-event keys (no AWS)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from jukinet.domain.card import CardType, EventKind, VirtualCard, apply, issue_details, next_event
from jukinet.domain.errors import ValidationError
from jukinet.services.card_across_tiers import check_chain

KEYS = {"20": ec.generate_private_key(ec.SECP256R1()), "13": ec.generate_private_key(ec.SECP256R1())}
T0 = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)
SERIAL = "202011-0123456789ABCDEF"


class LocalKeys:
    def for_prefecture(self, pp: str):  # noqa: ANN201
        return KEYS[pp].public_key()


def _sign(event, pp):  # noqa: ANN001, ANN202
    return event.signed(f"key-{pp}", KEYS[pp].sign(event.digest(), ec.ECDSA(hashes.SHA256())))


def chain(before: list[EventKind], after: list[EventKind]) -> list:
    card, events, t = None, [], T0
    details = issue_details("24727059608", CardType.B,
                            VirtualCard("1234").public_key, T0)
    steps = [(EventKind.ISSUED, "202011", details), *[(k, "202011", {}) for k in before],
             (EventKind.MOVED, "131016", {"from": "202011", "to": "131016"}), *[(k, "131016", {}) for k in after]]
    for kind, municipality, extra in steps:
        t += dt.timedelta(minutes=1)
        holder = card.home if card else SERIAL[:6]
        event = _sign(next_event(card, kind, serial=SERIAL, at=t, municipality=municipality, actor="clerk",
                                 details=extra), holder[:2])
        card = apply(card, event)
        events.append(event)
    return events


LIFE = st.integers(0, 2).map(lambda n: [EventKind.SUSPENDED, EventKind.RESUMED] * n)  # suspended, found again


@settings(max_examples=30, deadline=None)
@given(before=LIFE, after=LIFE, order=st.randoms(use_true_random=False))
def test_a_chain_across_tiers_verifies_in_any_order(before, after, order) -> None:
    events = chain(before, after)
    shuffled = list(events)
    order.shuffle(shuffled)
    card = check_chain(shuffled, LocalKeys())
    assert (card.home, card.issuer, card.seq) == ("131016", "202011", len(events))


@settings(max_examples=40, deadline=None)
@given(before=LIFE, after=LIFE, data=st.data())
def test_any_altered_dropped_or_wrongly_signed_event_is_refused(before, after, data) -> None:
    events = chain(before, after)
    i = data.draw(st.integers(0, len(events) - 1))
    how = data.draw(st.sampled_from(["actor", "at", "details", "drop", "other_key"]))
    broken = list(events)
    if how == "actor":
        broken[i] = replace(events[i], actor="thief")
    elif how == "at":
        broken[i] = replace(events[i], at=events[i].at + dt.timedelta(seconds=1))
    elif how == "details":
        broken[i] = replace(events[i], details={**events[i].details, "x": 1})
    elif how == "drop":
        if i == len(events) - 1:
            i = 0
        del broken[i]
    else:
        moved = next(n for n, e in enumerate(events) if e.kind is EventKind.MOVED)
        broken[i] = _sign(replace(events[i], signature=b""), "13" if i <= moved else "20")
    with pytest.raises(ValidationError):
        check_chain(broken, LocalKeys())
