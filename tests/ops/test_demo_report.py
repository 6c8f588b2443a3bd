"""What ``jukinet demo`` prints (jukinet_ops/demo_report.py, decision 0045), from a recorded run.

The demo itself takes minutes; these tests give the renderer results shaped like the default
month's (77 municipalities, 200 chains verified, 60 alarms, 7 refused requests…) and read the
text it prints: one screen by default with the rows that need attention, every row with
--verbose, and names and reasons whole when the output is not a terminal.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from pathlib import Path

from rich.console import Console

from jukinet.domain.provision import Problem
from jukinet.domain.reconciliation import ReconciliationRow
from jukinet.services.monitoring_report import Incident, MonitoringReport, SealSummary, StatsSummary, TierReport
from jukinet_ops.agency_traffic import TrafficReport
from jukinet_ops.card_demo import CopyDemo, SpecialMoveDemo
from jukinet_ops.card_stats import CardStatsRow
from jukinet_ops.cli import build_parser
from jukinet_ops.demo_report import WIDE, DemoConsole, DemoOutput, NightlyRun, Timings
from embedded_aws.monitoring import AlarmVerdict
from jukinet_ops.provision import StatsRow, VerifyReport
from jukinet_ops.redrive import QueueReport

MONTH = "2003-01"
KOMAGANE = ("202100", "駒ヶ根市")  # the name rich cut to "駒ヶ …" when the demo's output was piped
SHORT = ("202029", "松本市")  # the outage's municipality: one message short at the prefecture
BROKEN_CHAIN = "61234567890"
LONG_REASON = ("Threshold Crossed: 1 out of the last 1 datapoints [3.0 (04/12/26 03:05:00)] was greater than the "
               "threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition); signature failures at "
               "pref-200000: the message of 202011 長野市 sequence 000000000042 did not verify")
INCIDENT = ("pref-200000: a forged or altered update notice (1 signature failure, alarm "
            "jukinet-pref-200000-signature-failures raised 2003-01-31T10:00:00Z, held in the dead-letter queue)")


COPY = CopyDemo("202029", "松本市", "202011", "長野市", "card", "issued", "202029-2003-000001", 1, 8_123,
                Path("/repo/.jukinet/reports/wide-area-copy-202029-2003-000001.pdf"), "refused", "not_in_household",
                "a requested member is not a current member of the applicant's household", 0.8)
MOVE = SpecialMoveDemo("202037", "上田市", "202053", "飯田市", "202037-3F9A0C21D4E5B6A7", "filed", "certified",
                       "completed", "moved", "202053", "completed", "202053 特例転入", True, 1.9)
CARD_COUNTS = {"202011": {"issued": 3, "suspended": 1, "pin_locked": 1, "auth_ok": 1, "auth_refused_CARD_SUSPENDED": 1},
               "202029": {"wide_area_copy_requested": 2, "wide_area_copy_issued": 1,
                          "wide_area_copy_refused_not_in_household": 1}}


def municipalities() -> list[tuple[str, str]]:
    from infra.config import load_deployment

    deployment = load_deployment("nagano-demo")
    return [(m.code, m.name) for m in deployment.prefectures[0].municipality_tier.municipalities]


def reconciliation_rows(*, short: bool) -> list[ReconciliationRow]:
    rows = []
    for code, name in municipalities():
        sent = 240 + int(code[3:5])
        row = ReconciliationRow(code, name, MONTH, sent=sent, rejected=3, stored_prefecture=sent, stored_national=sent)
        if short and code == SHORT[0]:
            row.stored_prefecture -= 12  # the outage's message, 12 notices, not stored anywhere yet
            row.stored_national -= 12
            row.gaps_prefecture = [(7, 7)]
            row.gaps_national = [(7, 7)]
        rows.append(row)
    return rows


def verdicts(raised: list[str], still: list[str] = (), cleared: list[str] = ()) -> list[AlarmVerdict]:
    out = [AlarmVerdict(f"jukinet-pref-200000-quiet-{i:02d}", "ap-northeast-1", "123456789012", "OK", "OK", "ok")
           for i in range(48)]
    out += [AlarmVerdict(f"jukinet-national-no-data-{i}", "ap-northeast-1", "123456789012", "INSUFFICIENT_DATA",
                         "INSUFFICIENT_DATA", "no datapoints") for i in range(6)]
    out += [AlarmVerdict(name, "ap-northeast-1", "123456789012", "OK", "ALARM", LONG_REASON) for name in raised]
    out += [AlarmVerdict(name, "ap-northeast-1", "123456789012", "ALARM", "ALARM", LONG_REASON) for name in still]
    out += [AlarmVerdict(name, "ap-northeast-1", "123456789012", "ALARM", "OK", "back under") for name in cleared]
    out += [AlarmVerdict("jukinet-national-api-p99-latency", "ap-northeast-1", "123456789012", "OK", "OK",
                         "not evaluated locally: ExtendedStatistic p99", evaluated=False)]
    return out


def traffic() -> TrafficReport:
    report = TrafficReport()
    report.served.update({("mhlw-engo", "look-up"): 10, ("mhlw-engo", "search"): 5, ("nenkin", "look-up"): 10,
                          ("fsa", "look-up"): 6, ("fsa", "search"): 1, ("nagano-pref", "own use"): 8,
                          ("chikyosai", "batch"): 1, ("chikyosai", "batch status"): 1})
    report.refused += [
        ("stranger", "a role no agreement names", 403,
         "User: arn:aws:sts::123456789012:assumed-role/prober is not authorized to perform: execute-api:Invoke"),
        ("mhlw-engo", "through an endpoint not configured", 403,
         "User: anonymous is not authorized to perform: execute-api:Invoke with an explicit deny"),
        ("fsa", "an affair outside its agreements", 403, "AFFAIR_NOT_PERMITTED"),
        ("nenkin", "a look-up under a batch-only agreement", 403, "FUNCTION_NOT_PERMITTED"),
        ("fsa", "a field not permitted", 403, "FIELD_NOT_PERMITTED"),
        ("mhlw-engo", "a resident code with a wrong check digit", 400, "VALIDATION_ERROR"),
        ("mhlw-engo", "an oversized request", 400, "VALIDATION_ERROR"),
    ]
    report.refused += [("mhlw-engo", "scan: consecutive codes", 404, "NOT_FOUND")] * 10
    report.batch = {"status": "complete", "job_id": "job-1", "rows": 2000, "seconds": 8.0,
                    "outcomes": {"provided": 1998, "not_found": 2}, "result_keys": ["out/chikyosai/job-1/part-0"]}
    report.disclosure_code = "61000000019"
    return report


def stats_rows() -> list[StatsRow]:
    rows = [StatsRow("mhlw-engo", "厚生労働省", "MHLW", "DEMO-T1-ENGO-PENSION", "援護年金", "lookup", 45),
            StatsRow("nenkin", "日本年金機構", "JPS", "DEMO-T1-NENKIN-ADDRESS", "住所変更", "lookup", 10),
            StatsRow("chikyosai", "地方公務員共済組合", "Chikyosai", "DEMO-T1-CHIKYOSAI-PENSION", "年金", "batch", 1998)]
    return [*rows, StatsRow("", "合計", "total", "", "", "", sum(r.records for r in rows))]


def disclosure(*, broken: bool = False) -> dict:
    return {"resident_code": "61000000019", "from": "1970-01-01", "to": "2003-01-31",
            "provisions": [{"date": "2003-01-31", "recipient": "厚生労働省", "affair_code": "DEMO-T1-ENGO-PENSION",
                            "affair": "援護年金", "function": "lookup", "fields": ["name"], "provider": "national",
                            "delivery": "delivered", "entry": 1}],
            "disclosures": [],
            "chain": {"verified": not broken, "entries": 1, "unsealed_days": ["2003-01-31"],
                      "problems": ["61000000019#1: edited: the stored hash differs"] if broken else []}}


def verify_report(*, broken: bool) -> VerifyReport:
    residents = [f"61{i:09d}" for i in range(199)] + [BROKEN_CHAIN]
    problems = [Problem(f"{BROKEN_CHAIN}#2", "edited", "entry 2's hash does not match its content")] if broken else []
    return VerifyReport([], residents, problems, unconfirmed=[("prov-17", "61000000007")])


def monitoring() -> MonitoringReport:
    seals = SealSummary(made=24, due=24, missing=())
    tiers = [TierReport("national", seals=seals, stats=StatsSummary(2053, 2053, 0, (), False),
                        refusals_by_code={"AFFAIR_NOT_PERMITTED": 1, "VALIDATION_ERROR": 2}, gateway_refusals=2),
             TierReport("pref-200000", signature_failures=1)]
    incidents = [Incident("pref-200000", "a forged or altered update notice",
                          "1 signature failure, alarm jukinet-pref-200000-signature-failures raised "
                          "2003-01-31T10:00:00Z, held in the dead-letter queue")]
    incidents += [Incident("national", f"refused call {i}", "403 by the handler") for i in range(8)]
    return MonitoringReport("nagano-demo", MONTH, dt.datetime(2003, 1, 31, 12, tzinfo=dt.UTC), tiers, incidents)


NOTIFICATIONS = [f"2003-01-31T10:0{i}:00Z  pref-200000  jukinet-pref-200000-alarm-{i}  OK→ALARM  reason {i}"
                 for i in range(8)]


def recorded_run(output: DemoOutput, *, trouble: bool = False) -> None:
    """Every stage of a demo run, in the demo's order. ``trouble``: a municipality still short
    after the redrive and a broken chain (the default month has neither)."""
    output.assembly(".jukinet/cdk.out", 41.2)
    output.deployed("http://127.0.0.1:5123", 9, 1432, 38.5,
                    ["AWS::EC2::VPCEndpoint policy: not enforced on local calls"] * 12
                    + ["AWS::Events::Rule: schedules fire only when the demo fires them"] * 20)
    output.month(18_692, 203, 231, 77)
    output.processed(232, 61.0, "2 redelivered messages, 1 identical file dropped twice, 1 tampered message "
                     "(1 notice), 1 poison message, 1 message moved to the dead-letter queue after failed receives "
                     "(an outage)", 412, 95.2, ".jukinet/demo-functions.log")
    output.reconciliation(reconciliation_rows(short=True), MONTH)
    output.dead_letters([QueueReport("pref-200000", "jukinet-pref-200000-inbound-dlq", "jukinet-pref-200000-inbound",
                                     redrivable={"none": 1},
                                     not_selected={"signature_invalid": 1, "malformed_message": 1},
                                     senders={"none": ["202029"]}),
                         QueueReport("national", "jukinet-national-inbound-dlq", "jukinet-national-inbound")])
    output.redriven([QueueReport("pref-200000", "jukinet-pref-200000-inbound-dlq", "jukinet-pref-200000-inbound",
                                 redrivable={"none": 1}, moved={"none": 1}, record="/jukinet/redrive/1"),
                     QueueReport("national", "jukinet-national-inbound-dlq", "jukinet-national-inbound")],
                    {MONTH: reconciliation_rows(short=trouble)})
    output.nightly([NightlyRun("pref-200000", ("2002-12", MONTH), 0, "s3://reports/pref/2003-01-31.md"),
                    NightlyRun("national", ("2002-12", MONTH), 0, "s3://reports/national/2003-01-31.md")])
    output.alarms(verdicts(["jukinet-pref-200000-signature-failures"]), "Alarms after the update notices")
    output.provision_api("http://127.0.0.1:5124/prod", 6)
    output.traffic(traffic())
    output.alarms(verdicts(["jukinet-national-unauthorised-attempts", "jukinet-national-gateway-refusals",
                            "jukinet-national-scan-sequential-codes", "jukinet-national-scan-suspected-mhlw-engo",
                            "jukinet-national-not-found-ratio"], still=["jukinet-pref-200000-signature-failures"]),
                  "Alarms right after the refused requests and the scan")
    output.provision_stats(stats_rows(), MONTH)
    output.disclosure(disclosure(broken=trouble))
    output.verify(verify_report(broken=trouble))
    output.wide_area_copies((COPY if not trouble else CopyDemo(
        "202029", "松本市", "202011", "長野市", "document", "timed_out", refused_status="timed_out")), Path("/repo"))
    output.special_move(MOVE if not trouble else SpecialMoveDemo(
        "202037", "上田市", "202053", "飯田市", "202037-00000000000000AA", "filed", "refused", "refused",
        card_home="202037", move_out="filed", detail="period_expired"))
    output.card_stats([CardStatsRow(code, name, CARD_COUNTS.get(code, {}), 1 if code == "202011" else 0)
                       for code, name in municipalities()], MONTH)
    output.alarms(verdicts([], still=["jukinet-pref-200000-signature-failures"],
                           cleared=["jukinet-national-scan-sequential-codes"]), "Alarms after the counter step")
    output.notifications(NOTIFICATIONS, ".jukinet/notifications.log")
    output.monitoring_report(monitoring(), [])
    output.finished(Timings(total=412, synth=41, deploy=38, cs=61, tiers=95, provision=120))


def render(*, verbose: bool = False, trouble: bool = False) -> str:
    out = io.StringIO()  # not a terminal: what `jukinet demo > file` and CI see
    recorded_run(DemoOutput(DemoConsole(file=out), verbose=verbose), trouble=trouble)
    return out.getvalue()


# -- one screen -------------------------------------------------------------------------------------


def test_the_default_output_of_the_default_month_fits_one_screen():
    summary, verbose = render(), render(verbose=True)
    assert len(summary.splitlines()) <= 60, summary
    # The same run with --verbose has every row: the summary is what made it short.
    assert len(verbose.splitlines()) > 250


def test_chains_verified_are_one_line_and_a_broken_one_is_named():
    text = render()
    assert "200 chains verified, 0 broken" in text
    assert "chain verified" not in text  # no row per chain
    troubled = render(trouble=True)
    assert "199 chains verified, 1 broken" in troubled
    assert f"broken: {BROKEN_CHAIN}" in troubled
    assert f"{BROKEN_CHAIN}#2: edited: entry 2's hash does not match its content" in troubled


def test_reconciliation_is_a_total_per_tier_and_only_the_rows_that_do_not_balance():
    text = render()
    assert "CS sent" in text and "1 of 77 do not balance" in text
    assert "prefecture stored" in text and "national   stored" in text
    mismatches = [line for line in text.splitlines() if "MISMATCH" in line]
    assert len(mismatches) == 1 and SHORT[0] in mismatches[0] and SHORT[1] in mismatches[0]
    assert "MISMATCH 202029 松本市: sent 242 ≠ stored at prefecture 230 + dead-lettered there 0; " \
           "prefecture sees sequence gaps 7; national tier sees sequence gaps 7" in text
    assert KOMAGANE[1] not in text  # a municipality that balances has no row
    assert "after the redrive: every municipality balances" in text


def test_a_mismatch_left_after_the_redrive_is_shown():
    after = render(trouble=True).split("the outage is over")[1]
    assert "MISMATCH 202029 松本市" in after


def test_alarms_are_counted_and_the_ones_in_alarm_named_with_their_reason():
    text = render()
    assert "Alarms after the update notices: 56 alarms — 1 in ALARM, 48 OK, 6 INSUFFICIENT_DATA; " \
           "1 not evaluated locally" in text
    assert f"ALARM jukinet-pref-200000-signature-failures: {LONG_REASON}" in text
    assert "still in ALARM: jukinet-pref-200000-signature-failures" in text
    assert "jukinet-national-scan-sequential-codes" in text.split("Alarms after the counter step")[1]
    assert "jukinet-pref-200000-quiet-07" not in text  # an alarm in OK has no line


def test_refused_requests_are_shown_by_code():
    text = render()
    assert "refused 17 requests" in text
    assert "404 handler: NOT_FOUND ×10 — mhlw-engo: scan: consecutive codes ×10" in text
    assert "400 handler: VALIDATION_ERROR ×2 — mhlw-engo: a resident code with a wrong check digit; " \
           "mhlw-engo: an oversized request" in text
    assert "403 gateway: resource policy, explicit deny ×1" in text
    assert "served 42 requests" in text


def test_each_stage_keeps_its_figures():
    text = render()
    for figure in ("18,692 notices + 203 malformed rows in 231 export files", "412 invocations",
                   ("pref-200000 3 (malformed_message 1, none 1, signature_invalid 1 held: a security event until "
                    "explained); national empty"), "moved pref-200000 none 1", "pref-200000 0 mismatch(es), national 0",
                   "2,053 records — 厚生労働省 45, 日本年金機構 10, 地方公務員共済組合 1,998",
                   "1 entr(y/ies) logged with delivery unconfirmed", "prov-17 (resident 61000000007)",
                   "issued 3, suspended 1, pin_locked 1, auth_ok 1; refused 1 (CARD_SUSPENDED 1) — at 202011 長野市",
                   "batch (一括提供) job-1: 2,000 rows",
                   ("wide-area copy (住民票の写しの広域交付) at 202029 松本市's counter for a resident of 202011 長野市 "
                    "(card authenticated here): 202029-2003-000001, 1 page(s), 8,123 bytes → "
                    ".jukinet/reports/wide-area-copy-202029-2003-000001.pdf"),
                   "a copy naming a member not in the applicant's household → refused not_in_household",
                   "wide-area copies issued 1, refused 1 (not_in_household 1)", "e-mail, chat): 8 (8 OK→ALARM)", "32 items of 2 kinds",
                   "所見 (finding): 9件", "… and 6 more in the report", "Demo finished in 412 s"):
        assert figure in text, figure


# -- --verbose ----------------------------------------------------------------------------------------


def test_verbose_shows_every_row():
    text = render(verbose=True)
    for code, name in municipalities():  # every municipality's reconciliation row
        assert f"{code}" in text and name in text
    assert text.count("chain verified") == 200  # a row per chain
    assert "jukinet-national-api-p99-latency" in text  # the alarms not evaluated locally
    assert "AWS::Events::Rule: schedules fire only when the demo fires them" in text
    assert "Provision API: requests served" in text and "Resident cards 2003-01" in text
    assert "Wide-area copies 2003-01" in text and "not a current member of the applicant's household" in text
    assert "refused call 7" in text  # every incident
    assert "jukinet-pref-200000-alarm-7  OK→ALARM" in text and "… and 2 earlier" in text  # the last notifications


def test_the_cli_takes_verbose_and_passes_it_to_the_demo(monkeypatch):
    import jukinet_ops.demo
    from jukinet_ops.cli import main

    assert build_parser().parse_args(["demo"]).verbose is False
    assert build_parser().parse_args(["demo", "-v"]).verbose is True
    seen = {}
    monkeypatch.setattr(jukinet_ops.demo, "run_demo", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["demo", "--verbose", "--notices", "10"]) == 0
    assert seen["verbose"] is True and seen["notices"] == 10


# -- names whole --------------------------------------------------------------------------------------


def test_a_console_that_is_not_a_terminal_is_wide():
    console = DemoConsole(file=io.StringIO())
    assert not console.is_terminal and console.width == WIDE
    assert DemoConsole(file=io.StringIO(), width=120).width == 120


def test_names_and_reasons_are_whole_when_the_output_is_not_a_terminal():
    for verbose in (False, True):
        text = render(verbose=verbose, trouble=True)
        assert "…" not in text.replace("… and", "")  # rich's ellipsis: a cut cell
        assert LONG_REASON in text
        assert INCIDENT in text
        assert "MISMATCH" in text and "MISMA…" not in text
    assert f"{KOMAGANE[0]} │ {KOMAGANE[1]}" in render(verbose=True)


def test_a_plain_console_would_have_cut_the_table():
    # The control for the test above: rich's default for a file is 80 columns, and the
    # reconciliation table does not fit — the cut the demo showed before (decision 0045).
    out = io.StringIO()
    DemoOutput(Console(file=out), verbose=True).reconciliation(reconciliation_rows(short=True), MONTH)
    assert "MISMA…" in out.getvalue() and "駒ヶ …" in out.getvalue()  # as issue 18 saw it


def test_on_a_narrow_terminal_a_long_cell_is_folded_not_cut():
    out = io.StringIO()
    console = DemoConsole(file=out, force_terminal=True, width=60, color_system=None)
    name = "jukinet-pref-200000-signature-failures"
    DemoOutput(console, verbose=True).alarms(verdicts([name]), "Alarms")
    text = out.getvalue()
    assert "…" not in text
    in_alarm = text.split("In ALARM")[1].split("Not evaluated locally")[0]
    first_column = [line.split("│")[1].strip() for line in in_alarm.splitlines() if line.startswith("│")]
    assert "".join(first_column) == name  # folded over lines, every character there


def test_markup_in_a_name_or_reason_is_printed_as_written():
    out = io.StringIO()
    output = DemoOutput(DemoConsole(file=out))
    output.alarms([AlarmVerdict("jukinet-[bold]odd", "r", "a", "OK", "ALARM", "reason [red]x[/red]")], "Alarms")
    assert "jukinet-[bold]odd: reason [red]x[/red]" in out.getvalue()


def test_a_copy_not_issued_and_a_request_not_refused_are_shown_as_trouble():
    text = render(trouble=True)
    assert "for a resident of 202011 長野市: timed_out" in text
    assert "not in the applicant's household → timed_out (none)" in text
    assert "wide-area copy (住民票の写しの広域交付)" not in text


def test_the_special_move_is_one_line_and_trouble_is_shown():
    lines = [line for line in render().splitlines() if "特例転出→特例転入" in line]
    assert lines == ["   special move (特例転出→特例転入) 202037 上田市 → 202053 飯田市: filed, certified, completed; "
                     "card 202037-3F9A0C21D4E5B6A7 carried over (moved), held by 202053; 転出 + 特例転入 notices → "
                     "register 202053 特例転入, reconciled"]
    text = render(trouble=True)
    assert "filed, refused, refused (period_expired)" in text and "NOT reconciled" in text


def test_the_card_statistics_line_carries_the_special_moves():
    out = io.StringIO()
    DemoOutput(DemoConsole(file=out)).card_stats([
        CardStatsRow("202037", "上田市", {"issued": 1}, 0, {"filed": 1, "completed": 1}),
        CardStatsRow("202053", "飯田市", {"auth_ok": 1, "special_move_in_completed": 1})], MONTH)
    text = " ".join(out.getvalue().split())
    assert "special moves: out filed 1, completed 1; in completed 1, refused 0" in text
    assert "202053 飯田市" in text  # its authentication is a card's use


def test_refusal_counts_group_by_status_and_reason():
    text = render()
    lines = [line.strip() for line in text.splitlines() if " ×" in line]
    assert Counter(line.split(" ×")[0] for line in lines)["403 handler: AFFAIR_NOT_PERMITTED"] == 1
