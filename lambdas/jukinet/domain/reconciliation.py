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

Each processing tier's scheduled reconciliation (``services.reconciliation``) judges the part
it can see (``problems_at``): the prefecture the first equation and its own gaps, the national
tier the second equation and its own gaps. ``as_markdown`` and ``as_csv`` are the report it
writes; ``jukinet reconcile`` judges all of it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

PREFECTURE, NATIONAL = "prefecture", "national"


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
    # The CS's last file of the month was sent too recently for the tiers to have caught up
    # (the ledger watch's bound): reported, not judged.
    in_flight: bool = False

    @property
    def dead_lettered(self) -> int:
        return self.dead_lettered_prefecture + self.dead_lettered_national

    @property
    def problems(self) -> list[str]:
        return self.problems_at(PREFECTURE) + self.problems_at(NATIONAL)

    def problems_at(self, tier: str) -> list[str]:
        """What ``tier`` (``prefecture`` or ``national``) is answerable for: the equation whose
        right-hand side it holds, and its own gaps."""
        out = []
        if tier == PREFECTURE:
            if self.sent != self.stored_prefecture + self.dead_lettered_prefecture:
                out.append(f"sent {self.sent} ≠ stored at prefecture {self.stored_prefecture} "
                           f"+ dead-lettered there {self.dead_lettered_prefecture}")
            if self.gaps_prefecture:
                out.append(f"prefecture sees sequence gaps {format_gaps(self.gaps_prefecture)}")
        elif tier == NATIONAL:
            if self.stored_prefecture != self.stored_national + self.dead_lettered_national:
                out.append(f"stored at prefecture {self.stored_prefecture} ≠ stored nationally "
                           f"{self.stored_national} + dead-lettered there {self.dead_lettered_national}")
            if self.gaps_national:
                out.append(f"national tier sees sequence gaps {format_gaps(self.gaps_national)}")
        else:
            raise ValueError(f"tier {tier!r} must be {PREFECTURE!r} or {NATIONAL!r}")
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


CSV_COLUMNS = ("month", "municipality", "name", "sent", "rejected", "stored_prefecture", "dead_lettered_prefecture",
               "stored_national", "dead_lettered_national", "redriven_prefecture", "redriven_national",
               "gaps_prefecture", "gaps_national", "in_flight", "balanced", "problems")


def _gap_text(gaps: list[tuple[int, int]]) -> str:
    return " ".join(str(a) if a == b else f"{a}-{b}" for a, b in gaps)


def as_csv(rows: list[ReconciliationRow], tier: str) -> str:
    """One line per municipality and month; ``balanced`` and ``problems`` as judged at ``tier``
    (problems separated by `` | ``); the national columns empty in a prefecture's report (it
    does not read the national tier). UTF-8, ``\r\n`` line ends (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    national = tier != PREFECTURE  # the prefecture does not read the national tier: empty cells
    for r in rows:
        problems = r.problems_at(tier)
        writer.writerow([r.month, r.municipality, r.name, r.sent, r.rejected, r.stored_prefecture,
                         r.dead_lettered_prefecture, r.stored_national if national else "",
                         r.dead_lettered_national if national else "", r.redriven_prefecture,
                         r.redriven_national if national else "", _gap_text(r.gaps_prefecture),
                         _gap_text(r.gaps_national), str(r.in_flight).lower(), str(not problems).lower(),
                         " | ".join(problems)])
    return out.getvalue()


def as_markdown(rows: list[ReconciliationRow], tier: str, *, title: str, judged: list[str],
                generated_at: str) -> str:
    """The report a security officer reads: what was judged, the mismatches first, then every row."""
    judged_rows = [r for r in rows if not r.in_flight]
    bad = [r for r in judged_rows if r.problems_at(tier)]
    lines = [f"# {title}", "", f"Generated {generated_at}. Months reconciled: {', '.join(judged)}.", "",
             f"**Mismatches: {len(bad)}** (municipality-months that do not balance at the {tier} tier"
             f"{'; in flight, not judged: ' + str(len(rows) - len(judged_rows)) if len(judged_rows) != len(rows) else ''}).",
             ""]
    if bad:
        lines += ["## Mismatches", ""]
        for r in bad:
            for problem in r.problems_at(tier):
                lines.append(f"- {r.month} {r.municipality} {r.name}: {problem}")
        lines.append("")
    header = ("month", "municipality", "name", "sent", "rejected", "stored (pref.)", "dead-lettered (pref.)",
              "stored (national)", "dead-lettered (national)", "gaps (pref.)", "gaps (national)", "judged")
    lines += ["## Every municipality", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        verdict = "in flight" if r.in_flight else ("balanced" if not r.problems_at(tier) else "**mismatch**")
        national = (f"{r.stored_national:,}", f"{r.dead_lettered_national:,}") if tier != PREFECTURE else ("–", "–")
        cells = (r.month, r.municipality, r.name, f"{r.sent:,}", f"{r.rejected:,}", f"{r.stored_prefecture:,}",
                 f"{r.dead_lettered_prefecture:,}", *national,
                 format_gaps(r.gaps_prefecture) or "–", format_gaps(r.gaps_national) or "–", verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
