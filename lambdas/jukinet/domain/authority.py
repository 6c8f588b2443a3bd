"""Who may change which resident: a municipality changes only its own residents.

Rule (docs/architecture.md §Who may change which resident), checked by each tier against the
current state *it* holds. The *holder* of a resident is the municipality whose notice wrote
the current state (``Holding``).

1. A resident this tier holds no state for: any reason, from any municipality the message
   may carry. The first notice makes its sender the holder. (Refusing everything but
   entries here would lose a municipality's own 転居 that overtakes its 転入 on the way.)
2. The holder may send every reason.
3. Another municipality may send only
   a. 転入 / 特例転入 — the new municipality enters a resident who moved in, whether or not
      the old municipality's 転出 has arrived yet;
   b. a notice that sorts before the current state (``domain.ordering``) — above all the old
      municipality's 転出, or a change it made before the move, reported after the new
      municipality's 転入 arrived. It goes into the history only: the current state is a
      maximum, so a notice older than it can never become current, now or later.
4. 住民票コード変更 touches two codes: the rule applies to the new code and to the old one
   (the old code must be the sender's, or unknown to this tier).

Anything else is refused (field ``municipality``, rule ``holder``): dead-lettered with the
reason and counted, never stored. Notices of one message are checked in the order of the
ordering rule against the state as it stands after the ones before them, so a 転入 and a
転居 of the same new municipality in one message pass together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ValidationError
from .facts import ChangeReason
from .notice import UpdateNotice
from .ordering import events_for

MOVE_INS = frozenset({ChangeReason.MOVE_IN, ChangeReason.SPECIAL_MOVE_IN})


@dataclass(frozen=True, slots=True)
class Holding:
    """What the rule needs of a resident's current state at a tier."""

    municipality: str
    reason: ChangeReason
    change_date: dt.date
    order_key: str


def refusal(notice: UpdateNotice, holdings: Mapping[str, Holding]) -> ValidationError | None:
    """Why ``notice`` may not change the residents it touches, or None when it may."""
    sender = notice.municipality.value
    codes = [notice.resident_code.value]
    if notice.previous_resident_code is not None:
        codes.append(notice.previous_resident_code.value)
    for code in codes:
        held = holdings.get(code)
        if held is None or held.municipality == sender:
            continue
        if code == notice.resident_code.value and notice.reason in MOVE_INS:
            continue
        if notice.order_key < held.order_key:
            continue
        which = "the previous resident code" if code != notice.resident_code.value else "a resident"
        return ValidationError(
            "municipality", "holder",
            f"{sender} may not send {notice.reason.label_ja} for {which} held by {held.municipality} "
            f"(current: {held.reason.label_ja} of {held.change_date.isoformat()})")
    return None


def screen(notices: Iterable[UpdateNotice], holdings: Mapping[str, Holding]
           ) -> tuple[list[UpdateNotice], list[tuple[UpdateNotice, ValidationError]]]:
    """(accepted, refused with why), checking in the ordering rule's order against the state
    as it stands after the accepted ones before."""
    state = dict(holdings)
    accepted: list[UpdateNotice] = []
    refused: list[tuple[UpdateNotice, ValidationError]] = []
    for notice in sorted(notices, key=lambda n: n.order_key):
        why = refusal(notice, state)
        if why is not None:
            refused.append((notice, why))
            continue
        accepted.append(notice)
        for event in events_for(notice):
            held = state.get(event.resident_code)
            if held is None or event.order_key > held.order_key:
                state[event.resident_code] = Holding(notice.municipality.value, notice.reason, notice.change_date,
                                                     event.order_key)
    return accepted, refused
