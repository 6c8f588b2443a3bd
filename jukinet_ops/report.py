"""Terminal and JSON renderings of the operator reports."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

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


def reconciliation_json(rows: list[ReconciliationRow], month: str) -> str:
    return json.dumps({"month": month, "rows": [{
        "municipality": r.municipality, "name": r.name, "sent": r.sent, "rejected": r.rejected,
        "stored_prefecture": r.stored_prefecture, "stored_national": r.stored_national,
        "dead_lettered_prefecture": r.dead_lettered_prefecture, "dead_lettered_national": r.dead_lettered_national,
        "gaps_prefecture": r.gaps_prefecture, "gaps_national": r.gaps_national,
        "redriven_prefecture": r.redriven_prefecture, "redriven_national": r.redriven_national, "problems": r.problems,
    } for r in rows]}, ensure_ascii=False, indent=2)
