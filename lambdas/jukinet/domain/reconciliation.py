"""Reconciliation of update-notice counts across the tiers (the seed's 更新通知件数).

Per municipality and month (Japan time of the notice): what its CS sent and rejected, what
the prefecture and the national tier stored (each notice once, counted from the stored
history), what each tier dead-lettered, and the sequence gaps each tier sees. The counts
must balance::

    sent            == stored at prefecture + dead-lettered at prefecture
    stored at pref. == stored nationally    + dead-lettered nationally

and no tier may see a gap. A row that does not balance names the equation it breaks.

A dead letter that an operator redrove (``jukinet redrive``) and the tier then processed is
no longer counted as dead-lettered there: its notices count where they ended (stored, or
dead-lettered one by one). ``redriven_*`` says how many came back that way; it is not part of
the equations.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReconciliationRow:
    municipality: str
    name: str
    month: str
    sent: int = 0
    rejected: int = 0
    stored_prefecture: int = 0
    stored_national: int = 0
    dead_lettered_prefecture: int = 0
    dead_lettered_national: int = 0
    gaps_prefecture: list[tuple[int, int]] = field(default_factory=list)
    gaps_national: list[tuple[int, int]] = field(default_factory=list)
    redriven_prefecture: int = 0
    redriven_national: int = 0

    @property
    def dead_lettered(self) -> int:
        return self.dead_lettered_prefecture + self.dead_lettered_national

    @property
    def problems(self) -> list[str]:
        out = []
        if self.sent != self.stored_prefecture + self.dead_lettered_prefecture:
            out.append(f"sent {self.sent} ≠ stored at prefecture {self.stored_prefecture} "
                       f"+ dead-lettered there {self.dead_lettered_prefecture}")
        if self.stored_prefecture != self.stored_national + self.dead_lettered_national:
            out.append(f"stored at prefecture {self.stored_prefecture} ≠ stored nationally {self.stored_national} "
                       f"+ dead-lettered there {self.dead_lettered_national}")
        if self.gaps_prefecture:
            out.append(f"prefecture sees sequence gaps {format_gaps(self.gaps_prefecture)}")
        if self.gaps_national:
            out.append(f"national tier sees sequence gaps {format_gaps(self.gaps_national)}")
        return out

    @property
    def balanced(self) -> bool:
        return not self.problems


def format_gaps(gaps: list[tuple[int, int]], limit: int = 5) -> str:
    text = ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in gaps[:limit])
    return text + (f" (+{len(gaps) - limit} more)" if len(gaps) > limit else "")


def totals(rows: list[ReconciliationRow], month: str) -> ReconciliationRow:
    total = ReconciliationRow("total", "合計", month)
    for r in rows:
        total.sent += r.sent
        total.rejected += r.rejected
        total.stored_prefecture += r.stored_prefecture
        total.stored_national += r.stored_national
        total.dead_lettered_prefecture += r.dead_lettered_prefecture
        total.dead_lettered_national += r.dead_lettered_national
        total.redriven_prefecture += r.redriven_prefecture
        total.redriven_national += r.redriven_national
        total.gaps_prefecture += r.gaps_prefecture
        total.gaps_national += r.gaps_national
    return total
