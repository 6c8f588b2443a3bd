"""The ordering rule: how notices that arrive in any order become one current state.

Rule (documented in docs/architecture.md, "The ordering rule"):

1. A resident's notices are ordered by the date of the change (異動年月日); on the same
   date by the reason's same-day precedence (転出 before 転入, updates after entries,
   職権消除 after those, 死亡 last); then by notice time; then by municipality code and
   sequence number, which makes the order total. ``UpdateNotice.order_key`` is that order
   as sortable text.
2. The current state is the state written by the greatest notice seen. Arrival order never
   matters: a stale 転出 from the old municipality that arrives after the new
   municipality's 転入 goes into the history but does not change the current state.
3. The history holds every distinct notice once, keyed by ``notice_id``; a duplicate
   changes nothing.
4. A resident-code change (住民票コード変更) is two events: the new code gets the facts and a
   link to the old code; the old code gets status ``code_changed`` and a link to the new one.

Because the current state is a maximum over a set, every permutation of a set of notices,
with any duplicates, converges to the same state and the same history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .facts import ChangeKind, ChangeReason, IdentityFacts
from .notice import UpdateNotice


class ResidentStatus(Enum):
    ACTIVE = "active"
    DELETED = "deleted"
    CODE_CHANGED = "code_changed"


@dataclass(frozen=True, slots=True)
class ResidentEvent:
    """One notice as it bears on one resident code (a code change bears on two)."""

    resident_code: str
    notice: UpdateNotice
    status: ResidentStatus
    facts: IdentityFacts | None
    replaced_by: str | None = None
    replaces: str | None = None

    @property
    def order_key(self) -> str:
        return self.notice.order_key

    @property
    def notice_id(self) -> str:
        return self.notice.notice_id


def events_for(notice: UpdateNotice) -> list[ResidentEvent]:
    code = notice.resident_code.value
    if notice.reason is ChangeReason.CODE_CHANGE:
        old = notice.previous_resident_code.value  # type: ignore[union-attr]  # validated
        return [
            ResidentEvent(code, notice, ResidentStatus.ACTIVE, notice.facts, replaces=old),
            ResidentEvent(old, notice, ResidentStatus.CODE_CHANGED, None, replaced_by=code),
        ]
    if notice.reason.kind is ChangeKind.DELETION:
        return [ResidentEvent(code, notice, ResidentStatus.DELETED, None)]
    return [ResidentEvent(code, notice, ResidentStatus.ACTIVE, notice.facts)]


def supersedes(candidate_key: str, current_key: str | None) -> bool:
    """True when a notice with ``candidate_key`` should replace the current state."""
    return current_key is None or candidate_key > current_key


@dataclass
class ResidentRecord:
    """In-memory reference model of one resident: the rule above, with no storage."""

    resident_code: str
    current: ResidentEvent | None = None
    history: dict[str, ResidentEvent] = field(default_factory=dict)

    def apply(self, event: ResidentEvent) -> tuple[bool, bool]:
        """Returns (added to history, changed the current state)."""
        if event.notice_id in self.history:
            return False, False
        self.history[event.notice_id] = event
        if supersedes(event.order_key, None if self.current is None else self.current.order_key):
            self.current = event
            return True, True
        return True, False

    def ordered_history(self) -> list[ResidentEvent]:
        return sorted(self.history.values(), key=lambda e: e.order_key)


def converge(notices: list[UpdateNotice]) -> dict[str, ResidentRecord]:
    """Apply notices in the given order; the result is independent of that order."""
    records: dict[str, ResidentRecord] = {}
    for notice in notices:
        for event in events_for(notice):
            records.setdefault(event.resident_code, ResidentRecord(event.resident_code)).apply(event)
    return records
