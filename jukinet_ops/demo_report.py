"""What ``jukinet demo`` prints: one screen by default, every table with ``--verbose``.

The demo (``jukinet_ops/demo.py``) does the work and hands each stage's results to a
``DemoOutput``; only this module decides how they look (decision 0045):

* the default, ``DemoOutput(console)``: each stage in one or two lines with its figures, and
  only the rows that need attention — municipalities that do not balance, alarms in ALARM,
  refused requests by code, broken chains, problems of the provision log — plus the totals
  (about 60 lines for the default month);
* ``DemoOutput(console, verbose=True)`` (``jukinet demo --verbose``): the full tables as the
  operator commands print them (every municipality's reconciliation row, every chain verified,
  every alarm not evaluated locally…).

``DemoConsole`` never cuts a name or a reason: when its output is not a terminal (a pipe, a
file, CI) its width is ``WIDE`` instead of rich's 80 columns, so no table is squeezed; on a
terminal a cell too long for its column is folded onto the next line, never ended with "…".
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jukinet.domain.reconciliation import NATIONAL, PREFECTURE, ReconciliationRow, totals

if TYPE_CHECKING:
    from jukinet.services.monitoring_report import MonitoringReport
    from jukinet_ops.agency_traffic import TrafficReport
    from jukinet_ops.card_demo import CopyDemo, SpecialMoveDemo
    from jukinet_ops.card_stats import CardStatsRow
    from embedded_aws.monitoring import AlarmVerdict
    from jukinet_ops.provision import StatsRow, VerifyReport
    from jukinet_ops.redrive import QueueReport

# The width of a console that is not a terminal: wide enough for every table of the demo
# (the reconciliation's nine columns, an alarm's reason), so rich never cuts a cell to fit 80.
WIDE = 1000
ALARM, OK, INSUFFICIENT_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"


def never_cut(table: Table) -> Table:
    """Every column folds a value too long for it onto the next line instead of ending it with "…"."""
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


class DemoConsole(Console):
    """A rich console that shows every name whole: ``WIDE`` columns when the output is not a
    terminal (unless a width is given), and tables folded rather than cut on a terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("width") is None and not self.is_terminal:
            self.width = WIDE

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for o in objects:
            if isinstance(o, Table):
                never_cut(o)
        super().print(*objects, **kwargs)


@dataclass(frozen=True)
class NightlyRun:
    """One processing tier's nightly reconciliation, fired by the demo (decision 0033)."""

    tier: str
    months: tuple[str, ...] = ()
    mismatches: int = 0
    report: str = ""
    error: str = ""


@dataclass(frozen=True)
class Timings:
    total: float
    synth: float
    deploy: float
    cs: float
    tiers: float
    provision: float


def refusal_reason(code: str) -> str:
    """Who refused a request and why, from its error code (the handler's) or message (the gateway's)."""
    if code.isupper():
        return f"handler: {code}"
    if "explicit deny" in code:
        return "gateway: resource policy, explicit deny"
    if "not authorized" in code:
        return "gateway: resource policy, no allow"
    return f"gateway: {code}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)


@dataclass
class DemoOutput:
    """The demo's printing, stage by stage (the numbers in bold are the demo's steps)."""

    console: Console = field(default_factory=DemoConsole)
    verbose: bool = False
    # In the summary: the last notifications (the alarm changes are shown where they happen, so
    # none by default) and the first incidents of the monitoring report.
    notifications_shown: int = 0
    incidents_shown: int = 3

    def _line(self, text: str, *, style: str | None = None) -> None:
        """A line of plain text (no markup read from names or reasons), never cut."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def _step(self, number: int | str, text: str) -> None:
        self.console.print(f"[bold]{number}.[/] {escape(text)}", highlight=False, soft_wrap=True)

    # -- 1–5: the assembly, the embedded AWS, the month, the tiers ------------------------------

    def assembly(self, path: Path | str, seconds: float, *, reused: bool = False) -> None:
        """``reused``: the assembly of an earlier run, its inputs unchanged (decision 0054)."""
        if reused:
            self._step(1, f"cloud assembly: {path} reused — nothing synthesis reads has changed since it was "
                          f"synthesized (--resynth to synthesize again) ({seconds:.1f} s)")
        else:
            self._step(1, f"cloud assembly: {path} ({seconds:.1f} s)")

    def deployed(self, endpoint: str, stacks: int, resources: int, seconds: float,
                 not_emulated: Sequence[str] = ()) -> None:
        """``not_emulated``: the feature of each item the embedded AWS does not emulate."""
        kinds = sorted(set(not_emulated))
        text = f"embedded AWS at {endpoint}: {stacks} stacks, {resources} resources deployed ({seconds:.1f} s)"
        if not_emulated and not self.verbose:
            text += (f"; not emulated: {len(not_emulated)} items of {len(kinds)} kinds (docs/local-mode.md; "
                     "--verbose lists them)")
        self._step(2, text)
        if not_emulated and self.verbose:
            self._line(f"   not emulated ({len(not_emulated)} items, see docs/local-mode.md):")
            for kind in kinds:
                self._line(f"     {kind}")

    def month(self, valid: int, malformed: int, files: int, municipalities: int) -> None:
        self._step(3, f"synthetic month: {valid:,} notices + {malformed} malformed rows in {files} export files "
                      f"from {municipalities} municipalities (UTF-8 CSV, CP932 CSV, JSON Lines)")

    def processed(self, files: int, cs_seconds: float, injected: str, invocations: int, tier_seconds: float,
                  log_path: Path | str) -> None:
        self._step(4, f"CS processed {files} files in {cs_seconds:.1f} s; injected: {injected}")
        self._step(5, f"prefecture and national tiers idle after {invocations} invocations ({tier_seconds:.1f} s); "
                      f"function logs in {log_path}")

    # -- reconciliation and the dead-letter queues -----------------------------------------------

    def reconciliation(self, rows: list[ReconciliationRow], month: str) -> None:
        """Every municipality (verbose), or a line per tier with the totals and the rows that do not balance."""
        if self.verbose:
            from jukinet_ops.report import print_reconciliation

            print_reconciliation(rows, month, self.console)
            return
        total = totals(rows, month)
        bad = [r for r in rows if not r.balanced]
        verdict = "every municipality balances" if not bad else f"{len(bad)} of {len(rows)} do not balance"
        self.console.print(f"   reconciliation {month} (更新通知件数), {len(rows)} municipalities: CS sent "
                           f"{total.sent:,}, rejected {total.rejected:,} — "
                           f"[{'green' if not bad else 'bold red'}]{verdict}[/]", highlight=False, soft_wrap=True)
        for tier, stored, dead, redriven in ((PREFECTURE, total.stored_prefecture, total.dead_lettered_prefecture,
                                              total.redriven_prefecture),
                                             (NATIONAL, total.stored_national, total.dead_lettered_national,
                                              total.redriven_national)):
            off = sum(1 for r in rows if r.problems_at(tier))
            self._line(f"     {tier:<10} stored {stored:,}, dead-lettered {dead:,}"
                       + (f", redriven {redriven:,}" if redriven else "")
                       + (f"; {off} municipality row(s) off" if off else "; balances"))
        for r in bad:
            self._line(f"     MISMATCH {r.municipality} {r.name}: {'; '.join(r.problems)}", style="bold red")

    def dead_letters(self, reports: Sequence[QueueReport]) -> None:
        """The dead-letter queues as ``jukinet redrive`` counts them (a dry run)."""
        if self.verbose:
            self.console.print("[bold]Dead-letter queues[/] (`jukinet redrive`, a dry run):", highlight=False)
            self._line(_report_text(reports, apply=False))
            return
        from jukinet_ops.redrive import SECURITY_REASONS

        parts = []
        for r in reports:
            if not r.total:
                parts.append(f"{r.tier} empty")
                continue
            reasons = []
            for reason, n in sorted({**r.redrivable, **r.not_selected}.items()):
                held = " held: a security event until explained" if reason in SECURITY_REASONS else ""
                reasons.append(f"{reason} {n}{held}")
            reasons += [f"{reason} {n} cannot go back (the sender re-sends)" for reason, n in sorted(r.fragments.items())]
            reasons += [f"{reason} {n} past its deadline (channel: never redriven)"
                        for reason, n in sorted(r.past_deadline.items())]
            parts.append(f"{r.tier} {r.total} ({', '.join(reasons)})")
        self._line("   dead-letter queues (`jukinet redrive`): " + "; ".join(parts))

    def redriven(self, reports: Sequence[QueueReport], rows_by_month: Mapping[str, list[ReconciliationRow]]) -> None:
        """`jukinet redrive --reason none --apply`, then the reconciliation of each month again."""
        if self.verbose:
            self._line("The outage is over: `jukinet redrive --reason none --apply`:")
            self._line(_report_text(reports, apply=True))
        else:
            moved = [f"{r.tier} {_counts(r.moved)}" for r in reports if sum(r.moved.values())]
            self._line("   the outage is over: `jukinet redrive --reason none --apply` moved "
                       + ("; ".join(moved) if moved else "nothing"))
        for month, rows in sorted(rows_by_month.items()):
            if all(r.balanced for r in rows):
                total = totals(rows, month)
                self.console.print(f"   [green]reconciliation {month} after the redrive: every municipality balances[/] "
                                   f"(sent {total.sent:,}, stored at the prefecture {total.stored_prefecture:,} and "
                                   f"nationally {total.stored_national:,})", highlight=False, soft_wrap=True)
            elif self.verbose:
                from jukinet_ops.report import print_reconciliation

                print_reconciliation(rows, month, self.console, only_problems=True)
            else:
                self.reconciliation(rows, month)

    def nightly(self, runs: Sequence[NightlyRun]) -> None:
        """Each processing tier's nightly reconciliation (one line per tier with --verbose, else one line)."""
        for run in runs:
            if run.error:
                self._line(f"   nightly reconciliation of {run.tier} failed: {run.error}", style="red")
        done = [run for run in runs if not run.error]
        if self.verbose:
            for run in done:
                self._line(f"Nightly reconciliation of {run.tier} (months {', '.join(run.months)}): "
                           f"{run.mismatches} mismatch(es); report {run.report} (and .csv)")
        elif done:
            months = sorted({m for run in done for m in run.months})
            self._line(f"   nightly reconciliation (months {', '.join(months)}): "
                       + ", ".join(f"{run.tier} {run.mismatches} mismatch(es)" for run in done)
                       + "; reports in the tiers' security-reports buckets")

    # -- alarms ---------------------------------------------------------------------------------

    def alarms(self, verdicts: Sequence[AlarmVerdict], title: str) -> None:
        """The alarm states: the tables (verbose), or the counts, each alarm in ALARM with its
        reason (the ones raised by this evaluation) or by name (already in ALARM), and the cleared ones."""
        if self.verbose:
            from embedded_aws.monitoring import print_alarm_status

            print_alarm_status(self.console, verdicts, title=title)
            return
        evaluated = [v for v in verdicts if v.evaluated]
        counts = Counter(v.new_state for v in evaluated)
        not_evaluated = len(verdicts) - len(evaluated)
        firing = sorted((v for v in evaluated if v.new_state == ALARM), key=lambda v: v.name)
        self.console.print(
            f"   {escape(title)}: {len(verdicts)} alarms — "
            + (f"[bold red]{counts[ALARM]} in ALARM[/]" if counts[ALARM] else "[green]0 in ALARM[/]")
            + f", {counts[OK]} OK, {counts[INSUFFICIENT_DATA]} INSUFFICIENT_DATA"
            + (f"; {not_evaluated} not evaluated locally (--verbose lists them)" if not_evaluated else ""),
            highlight=False, soft_wrap=True)
        for v in firing:
            if v.changed:
                self._line(f"     ALARM {v.name}: {v.reason}", style="bold red")
        still = [v.name for v in firing if not v.changed]
        if still:
            self._line(f"     still in ALARM: {', '.join(still)}", style="red")
        cleared = sorted(v.name for v in evaluated if v.changed and v.old_state == ALARM)
        if cleared:
            self._line(f"     back to {OK} or no data: {', '.join(cleared)}", style="green")

    # -- 6: the provision API --------------------------------------------------------------------

    def provision_api(self, url: str, recipient_roles: int) -> None:
        self._step(6, f"provision API served at {url} (the deployed private REST API; SigV4 checked against local "
                      f"credentials of {recipient_roles} recipient roles)")

    def traffic(self, report: TrafficReport) -> None:
        """The requests served and refused, and the batch."""
        if self.verbose:
            served = Table(title="Provision API: requests served")
            for col in ("recipient", "request", "answered"):
                served.add_column(col, justify="right" if col == "answered" else "left")
            for (who, what), n in sorted(report.served.items()):
                served.add_row(who, what, str(n))
            self.console.print(served)
            refused = Table(title="Provision API: requests refused (each logged and counted)")
            for col in ("caller", "request", "status", "refused by / code"):
                refused.add_column(col)
            for who, what, status_code, code in report.refused:
                refused.add_row(who, what, str(status_code), refusal_reason(code))
            self.console.print(refused)
        else:
            by_recipient: dict[str, Counter] = {}
            for (who, what), n in sorted(report.served.items()):
                by_recipient.setdefault(who, Counter())[what] += n
            self._line(f"   served {sum(report.served.values()):,} requests: " + "; ".join(
                f"{who} {sum(c.values())} ({_counts(c)})" for who, c in by_recipient.items()))
            groups: dict[tuple[int, str], Counter] = {}
            for who, what, status_code, code in report.refused:
                groups.setdefault((status_code, refusal_reason(code)), Counter())[f"{who}: {what}"] += 1
            self._line(f"   refused {len(report.refused)} requests (each logged and counted), by code:")
            for (status_code, reason), calls in sorted(groups.items()):
                self._line(f"     {status_code} {reason} ×{sum(calls.values())} — "
                           + "; ".join(call + (f" ×{n}" if n > 1 else "") for call, n in calls.items()),
                           style="yellow")
        batch = report.batch
        if batch.get("status") == "complete":
            outcomes = ", ".join(f"{k} {v}" for k, v in batch["outcomes"].items() if v)
            self._line(f"   batch (一括提供) {batch['job_id']}: {batch['rows']:,} rows in {batch['seconds']:.1f} s "
                       f"({batch['rows'] / batch['seconds']:,.0f} rows/s) — {outcomes}; results in "
                       f"{len(batch['result_keys'])} part(s) under out/chikyosai/")
        else:
            self._line(f"   batch did not complete: {batch}", style="red")

    def provision_stats(self, rows: Sequence[StatsRow], month: str) -> None:
        if self.verbose:
            from jukinet_ops.provision import stats_table

            self.console.print(stats_table(rows, month))
            return
        per_recipient: Counter = Counter()
        for r in rows:
            if not r.is_total:
                per_recipient[r.name_ja or r.recipient_id] += r.records
        total = sum(per_recipient.values())
        self._line(f"   provisions {month} (本人確認情報の提供件数): {total:,} records — {_counts(per_recipient)}")

    def disclosure(self, result: Mapping[str, Any]) -> None:
        from jukinet_ops.provision import chain_line

        if self.verbose:
            from jukinet_ops.provision import print_disclosure

            self._line(f"Disclosure (提供状況の開示) for resident {result['resident_code']}:")
            print_disclosure(result, self.console)
            return
        provisions = result["provisions"]
        unconfirmed = sum(1 for p in provisions if p.get("delivery") != "delivered")
        verified = result["chain"]["verified"]
        self._line(f"   disclosure (提供状況の開示) for resident {result['resident_code']}: {len(provisions)} "
                   f"provision(s)" + (f", {unconfirmed} with delivery unconfirmed" if unconfirmed else "")
                   + f"; {chain_line(result)}", style=None if verified else "bold red")
        for problem in result["chain"]["problems"]:
            self._line(f"     {problem}", style="bold red")

    def verify(self, report: VerifyReport) -> None:
        """The provision log's verification: every day and chain (verbose), or one line and the problems."""
        if self.verbose:
            from jukinet_ops.provision import print_verify

            print_verify(report, self.console)
            self._line("   Entries of this hour are checked by their hash chains; the sealer signs every hour at :10 "
                       "(`jukinet verify` then checks them against the hour's seal).")
            return
        broken = sorted({p.where.rsplit("#", 1)[0] for p in report.chain_problems} & set(report.residents))
        days = f"; {len(report.days)} day(s) checked" if report.days else ""
        self.console.print(f"   provision log (提供記録): {len(report.residents) - len(broken)} chains verified, "
                           + (f"[bold red]{len(broken)} broken[/]" if broken else "0 broken") + escape(days),
                           highlight=False, soft_wrap=True)
        if broken:
            self._line(f"     broken: {', '.join(broken)}", style="bold red")
        for p in report.problems:
            self._line(f"     {p}", style="bold red")
        for d in report.days:
            if d.ok and d.sealed:
                continue
            self._line(f"     {d.day}: {d.status}", style="bold red" if d.problems else "yellow")
        if report.unconfirmed:
            self._line(f"     {len(report.unconfirmed)} entr(y/ies) logged with delivery unconfirmed (decision 0034): "
                       + ", ".join(f"provision {pid} (resident {code})" for pid, code in report.unconfirmed),
                       style="yellow")

    # -- 7: the counter ----------------------------------------------------------------------------

    def wide_area_copies(self, copy: CopyDemo, root: Path | None = None) -> None:
        """The wide-area copy in a line (serial, pages and bytes, where the PDF is) and the
        refused one in another (its code; ``--verbose`` adds the meaning and the time taken)."""
        where = copy.path
        if where is not None and root is not None and where.is_relative_to(root):
            where = where.relative_to(root)
        proof = "card authenticated here" if copy.proof == "card" else "ID document checked by the clerk"
        if copy.status == "issued":
            self._line(f"   wide-area copy (住民票の写しの広域交付) at {copy.issuer} {copy.issuer_name}'s counter for a "
                       f"resident of {copy.home} {copy.home_name} ({proof}): {copy.serial}, {copy.pages} page(s), "
                       f"{copy.size:,} bytes" + (f" → {where}" if where else ""))
        else:
            self._line(f"   wide-area copy at {copy.issuer} {copy.issuer_name}'s counter for a resident of {copy.home} "
                       f"{copy.home_name}: {copy.status}", style="bold red")
        self._line(f"   a copy naming a member not in the applicant's household → {copy.refused_status} "
                   f"{copy.refusal or '(none)'}" + (f" ({copy.meaning})" if self.verbose and copy.meaning else "")
                   + (f"; both in {copy.seconds:.1f} s" if self.verbose else ""),
                   style=None if copy.refused_status == "refused" else "bold red")

    def special_move(self, move: SpecialMoveDemo) -> None:
        """The special move-out/move-in in one line (decision 0045): the flow's states, where the
        card went, the register after the two notices, whether they reconciled; ``--verbose`` adds
        the time taken."""
        ok = move.status == "completed" and move.card_home == move.to and move.balanced
        self._line(f"   special move (特例転出→特例転入) {move.home} {move.home_name} → {move.to} {move.to_name}: "
                   f"{move.filed or '?'}, {move.certified or '?'}, {move.status or '?'}"
                   + (f" ({move.detail})" if move.detail else "")
                   + f"; card {move.serial} carried over ({move.carry_over or '-'}), held by {move.card_home or '?'}; "
                   f"転出 + 特例転入 notices → register {move.register or '?'}, "
                   + ("reconciled" if move.balanced else "NOT reconciled")
                   + (f"; {move.seconds:.1f} s" if self.verbose else ""), style=None if ok else "bold red")

    def card_stats(self, rows: Sequence[CardStatsRow], month: str) -> None:
        if self.verbose:
            from jukinet_ops.card_stats import copies_table, moves_table, stats_table

            self.console.print(stats_table(rows, month))
            self.console.print(copies_table(rows, month))
            self.console.print(moves_table(rows, month))
            return
        from jukinet_ops.card_stats import COLUMNS

        counts = Counter({c: sum(r.counts.get(c, 0) for r in rows) for c in COLUMNS})
        refused: Counter = Counter()
        for r in rows:
            refused.update(r.refused)
        where = ", ".join(f"{r.municipality} {r.name}" for r in rows if r.has_cards)
        copies: Counter = Counter()
        copies_refused: Counter = Counter()
        for r in rows:
            copies.update({k: v for k, v in r.copies.items() if k in ("issued", "timed_out")})
            copies_refused.update(r.copies_refused)
        copy_part = ""
        if sum(copies.values()) or copies_refused:
            copy_part = (f"; wide-area copies issued {copies['issued']}, refused {sum(copies_refused.values())}"
                         + (f" ({_counts(copies_refused)})" if copies_refused else "")
                         + (f", timed out {copies['timed_out']}" if copies["timed_out"] else ""))
        moves: Counter = Counter()
        for r in rows:
            moves.update(r.moves)
        move_part = ""
        if sum(moves.values()):
            move_part = (f"; special moves: out filed {moves['out_filed']}, completed {moves['out_completed']}; in "
                         f"completed {moves['in_completed']}, refused {moves['in_refused']}")
        self._line(f"   resident cards {month} (住基カード): {_counts(counts) or 'none'}"
                   + (f"; refused {sum(refused.values())} ({_counts(refused)})" if refused else "")
                   + (f" — at {where}" if where else "") + copy_part + move_part)

    # -- 8, 9: notifications and the monitoring report -------------------------------------------

    def notifications(self, lines: Sequence[str], path: Path | str) -> None:
        """How many notifications were sent, by change, and the last ones that raised or cleared an
        alarm (time, tier, alarm, change; the reasons are in the file)."""
        shown = 6 if self.verbose else self.notifications_shown
        changes: Counter = Counter(line.split("  ")[3] for line in lines)
        summary = ", ".join(f"{n} {c}" for c, n in changes.most_common())
        self.console.print(f"[bold]Notifications sent[/] to the tiers' alarm topics (e-mail, chat): {len(lines)} "
                           f"({escape(summary or 'none')}); each with its reason in {escape(str(path))}",
                           highlight=False, soft_wrap=True)
        alarming = [line for line in lines if "ALARM" in line.split("  ")[3].replace("INSUFFICIENT_DATA", "")]
        for line in alarming[-shown:] if shown else []:
            self._line("   " + "  ".join(line.split("  ")[:4]))
        if shown and len(alarming) > shown:
            self._line(f"   … and {len(alarming) - shown} earlier")

    def monitoring_report(self, report: MonitoringReport, paths: Sequence[Path]) -> None:
        """The month's monitoring report: per tier one line, and the finding with its incidents whole."""
        from jukinet.services.monitoring_report import summary_lines

        head = summary_lines(report)[:1 + len(report.tiers) + 1]  # the title, a line per tier, the finding
        where = f"{', '.join(p.name for p in paths)} in {paths[0].parent}" if paths else ""
        self.console.print(f"[bold]{escape(head[0])}[/]" + (f" — {escape(where)}" if where else ""),
                           highlight=False, soft_wrap=True)
        finding_style = "green" if report.clean else "bold red"
        for line in head[1:]:
            self._line(line, style=finding_style if line.startswith("所見") else None)
        if report.clean:
            return
        shown = len(report.incidents) if self.verbose else self.incidents_shown
        for incident in report.incidents[:shown]:
            self._line(f"  - {incident}", style=finding_style)
        if len(report.incidents) > shown:
            self._line(f"  … and {len(report.incidents) - shown} more in the report (--verbose lists them)")

    def finished(self, t: Timings) -> None:
        self._line(f"Demo finished in {t.total:.0f} s (synth {t.synth:.0f}, deploy {t.deploy:.0f}, CS {t.cs:.0f}, "
                   f"tiers {t.tiers:.0f}, provision {t.provision:.0f}).")

    def warning(self, text: str) -> None:
        self._line(text, style="yellow")


def _report_text(reports: Iterable[QueueReport], *, apply: bool) -> str:
    from jukinet_ops.redrive import print_reports

    text = io.StringIO()
    print_reports(list(reports), apply=apply, out=text)
    return text.getvalue().rstrip()
