"""Terminal and JSON renderings of the operator reports."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from jukinet.domain.channel import ChannelRow
from jukinet.domain.reconciliation import ReconciliationRow, format_gaps, totals


def reconciliation_table(rows: list[ReconciliationRow], month: str, title: str | None = None) -> Table:
    table = Table(title=title or f"Update notices {month} (更新通知件数) — reconciliation", show_lines=False)
    for name, justify in [("code", "left"), ("municipality", "left"), ("sent", "right"), ("rejected", "right"),
                          ("stored pref.", "right"), ("stored national", "right"), ("dead-lettered", "right"),
                          ("gaps", "left"), ("", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in [*rows, totals(rows, month)]:
        style = None if r.balanced else "bold red"
        gaps = format_gaps(r.gaps_prefecture or r.gaps_national) if (r.gaps_prefecture or r.gaps_national) else ""
        table.add_row(r.municipality, r.name, f"{r.sent:,}", f"{r.rejected:,}", f"{r.stored_prefecture:,}",
                      f"{r.stored_national:,}", f"{r.dead_lettered:,}", gaps, "OK" if r.balanced else "MISMATCH",
                      style=style, end_section=r.municipality != "total" and r is rows[-1])
    return table


def print_reconciliation(rows: list[ReconciliationRow], month: str, console: Console | None = None,
                         only_problems: bool = False) -> None:
    console = console or Console()
    shown = [r for r in rows if not r.balanced] if only_problems else rows
    console.print(reconciliation_table(shown or rows[:0], month))
    bad = [r for r in rows if not r.balanced]
    if bad:
        console.print(f"[bold red]{len(bad)} municipality row(s) do not balance:[/]")
        for r in bad:
            for problem in r.problems:
                console.print(f"  {r.municipality} {r.name}: {problem}")
    else:
        console.print("[green]Every municipality balances across the three tiers.[/]")
    total = totals(rows, month)
    if total.redriven_prefecture or total.redriven_national:
        console.print(f"Redriven and processed (no longer dead-lettered): {total.redriven_prefecture:,} at the "
                      f"prefecture, {total.redriven_national:,} nationally (jukinet redrive).")


def channel_table(rows: list[ChannelRow], month: str) -> Table:
    table = Table(title=f"Channel between municipalities {month} — reconciliation", show_lines=False)
    for name in ("code", "municipality", "requested", "answered", "refused", "timed out", "pending",
                 "answers given", "refusals given", ""):
        table.add_column(name, justify="left" if name in ("code", "municipality", "") else "right")
    for r in rows:
        table.add_row(r.municipality, r.name, *(f"{n:,}" for n in (
            r.requested, r.answered, r.refused, r.timed_out, r.pending, r.answers_given, r.refusals_given)),
            "OK" if not r.problems else "MISMATCH", style=None if not r.problems else "bold red")
    return table


def channel_summary(rows: list[ChannelRow], month: str) -> str:
    """One line: the month's requests by outcome over every municipality, and the verdict."""
    t = {k: sum(getattr(r, k) for r in rows) for k in ("requested", "answered", "refused", "timed_out", "pending",
                                                        "answers_given", "refusals_given")}
    bad = [r for r in rows if r.problems]
    verdict = (f"{len(bad)} municipality row(s) MISMATCH" if bad
               else "every request answered, refused, timed out or pending")
    return (f"channel {month}: {t['requested']:,} requested — {t['answered']:,} answered, {t['refused']:,} "
            f"refused, {t['timed_out']:,} timed out, {t['pending']:,} pending; as home {t['answers_given']:,} "
            f"answers, {t['refusals_given']:,} refusals given; {verdict}")


def print_channel(rows: list[ChannelRow], month: str, console: Console | None = None,
                  only_problems: bool = False) -> None:
    """The channel's rows after the notices' table: the municipalities with traffic (or only
    those that do not balance), their problems, and a summary line."""
    console = console or Console()
    shown = [r for r in rows if (r.problems if only_problems else r.active)]
    if shown:
        console.print(channel_table(shown, month))
    for r in rows:
        for problem in r.problems:
            console.print(f"  [bold red]{r.municipality} {r.name}: {problem}[/]")
    console.print(channel_summary(rows, month), markup=False, highlight=False)


def reconciliation_json(rows: list[ReconciliationRow], month: str, channel: list[ChannelRow] | None = None) -> str:
    return json.dumps({"month": month, **({"channel": [
        {**r.to_dict(), "name": r.name, "problems": r.problems} for r in channel]} if channel else {}), "rows": [{
        "municipality": r.municipality, "name": r.name, "sent": r.sent, "rejected": r.rejected,
        "stored_prefecture": r.stored_prefecture, "stored_national": r.stored_national,
        "dead_lettered_prefecture": r.dead_lettered_prefecture, "dead_lettered_national": r.dead_lettered_national,
        "gaps_prefecture": r.gaps_prefecture, "gaps_national": r.gaps_national,
        "redriven_prefecture": r.redriven_prefecture, "redriven_national": r.redriven_national, "problems": r.problems,
    } for r in rows]}, ensure_ascii=False, indent=2)
