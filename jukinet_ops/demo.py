"""``jukinet demo``: a month of Nagano's update notices through all three tiers, locally.

1. synthesize the CDK app (the same cloud assembly ``cdk deploy`` would deploy);
2. start the embedded AWS (a moto server on 127.0.0.1) and deploy the assembly into it;
3. generate a synthetic month (default: the 18,692 notices Nagano's municipalities sent in
   January 2003, plus malformed rows) as each municipality's export files;
4. drop the files into the municipalities' drop zones, run the deployed CS functions, and
   inject what a real network meets — an identical file dropped twice, SQS redeliveries,
   a tampered message, a poison message, and a genuine message moved to the dead-letter
   queue after failed receives (an outage);
5. run the deployed prefecture and national processors until every queue is empty;
6. print the reconciliation table (the outage's municipality is short), the dead-letter
   queues as ``jukinet redrive`` counts them, redrive the outage's message and show the
   reconciliation balancing again, then the alarm states, evaluated from the metrics the
   functions emitted;
7. serve the deployed provision API locally (SigV4) and play a month of agency traffic —
   look-ups, searches, the prefecture's own use, one batch, and requests that must be
   refused — then print the month's provision statistics, one resident's disclosure and the
   provision log's verification;
8. show the notifications sent: every alarm transition that notified a tier's alarm topic
   (e-mail, chat) is a line of ``.jukinet/notifications.log`` (time, tier, alarm, old→new,
   reason); the last few are printed;
9. the month's monitoring report (``jukinet monitoring-report``): per tier in one line, and
   the finding — the demo's forged message and refused requests are its incidents.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jukinet.adapters import aws
from jukinet.clock import Clock, month_jst, system_clock, today_jst
from jukinet.domain.message import Payload

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_ROOT / ".jukinet"


def run_demo(*, notices: int = 18_692, seed: int = 2003, deployment_name: str | None = None,
             cdk_out: str | None = None, console: Console | None = None, clock: Clock = system_clock) -> int:
    """The demo. ``clock`` is the one the embedded AWS, its functions and the reports share:
    the functions run in this process and read the system clock, so only a moved process
    clock (``scripts/test-any-date``) moves them all together."""
    from infra.config import load_deployment
    from infra.naming import Names, prefecture_tier
    from jukinet_ops.demo_data import generate_month
    from jukinet_ops.local.deploy import deploy_assembly
    from jukinet_ops.local.flow_logs import FlowLogRecorder
    from jukinet_ops.local.monitoring import LocalMonitoring, NotificationLog, print_alarm_status
    from jukinet_ops.local.runner import LocalRunner
    from jukinet_ops.local.server import MotoServer, local_credentials
    from jukinet_ops.reconcile import reconcile_deployment
    from jukinet_ops.report import print_reconciliation
    from jukinet_ops.synth import synth

    console = console or Console()
    deployment = load_deployment(deployment_name)
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    timings: dict[str, float] = {}
    WORK_DIR.mkdir(exist_ok=True)
    started = time.perf_counter()

    with ExitStack() as stack:
        t = time.perf_counter()
        if cdk_out:
            out = Path(cdk_out)
        else:
            with console.status("Synthesizing the CDK app (cdk synth)…"):
                out = synth(deployment_name, WORK_DIR / "cdk.out", today=today_jst(clock()))
        timings["synth"] = time.perf_counter() - t
        console.print(f"[bold]1.[/] cloud assembly: {out} ({timings['synth']:.1f} s)")

        t = time.perf_counter()
        with console.status("Starting the embedded AWS and deploying the assembly…"):
            server = stack.enter_context(MotoServer(log_file=WORK_DIR / "moto.log"))
            env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        timings["deploy"] = time.perf_counter() - t
        resources = sum(len(s.resources) for s in env.stacks.values())
        console.print(f"[bold]2.[/] embedded AWS at {server.endpoint_url}: {len(env.stacks)} stacks, "
                      f"{resources} resources deployed ({timings['deploy']:.1f} s)")
        if env.not_emulated:
            kinds = sorted({n.feature for n in env.not_emulated})
            console.print(f"   not emulated ({len(env.not_emulated)} items, see docs/local-mode.md): "
                          f"{'; '.join(k[:70] for k in kinds[:6])}{' …' if len(kinds) > 6 else ''}")

        # The operator side of the demo (uploads, injections, reconciliation) talks to the
        # embedded AWS like any AWS client.
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()

        municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        month = generate_month(municipalities, notices=notices, seed=seed)
        console.print(f"[bold]3.[/] synthetic month: {month.valid_rows:,} notices + {month.malformed_rows} malformed "
                      f"rows in {month.file_count} export files from {len(municipalities)} municipalities "
                      f"(UTF-8 CSV, CP932 CSV, JSON Lines)")

        log_path = WORK_DIR / "demo-functions.log"
        log_stream = stack.enter_context(open(log_path, "w", encoding="utf-8"))
        # share_modules: one import of the deployed code serves every function (each still runs
        # with its own environment; the handlers cache their runtime per environment). Separate
        # copies per function cost ~0.5 s of cold start each, 40 s for Nagano's 79 functions.
        # The functions' EMF metrics become CloudWatch metric data in the embedded AWS, and the
        # deployed alarms are evaluated from them (jukinet_ops/local/monitoring.py).
        # Every alarm transition that notifies a tier's topic is also written to a log: what
        # would have been sent by e-mail or chat (shown at the end).
        notifications = NotificationLog(WORK_DIR / "notifications.log", truncate=True)
        monitoring = stack.enter_context(LocalMonitoring(env, stream=log_stream, notifications=notifications))
        # Each invocation's AWS calls and sockets become the flow-log and DNS query-log records its
        # VPC would write, so the network watch's alarms see the demo's traffic (local/flow_logs.py).
        flow_logs = stack.enter_context(FlowLogRecorder(env.client, now=lambda: clock().timestamp()).installed())
        runner = stack.enter_context(LocalRunner(env, log_stream=monitoring.sink, share_modules=True, flow_logs=flow_logs,
                                                 cache_dir=Path(tempfile.mkdtemp(prefix="jukinet-code-"))))
        if deployment.agencies:
            # The sealer's hourly scheduled run (EventBridge is not emulated): it starts the seal
            # chain and reports the heartbeat the provision-log-not-sealed alarm watches.
            runner.invoke(names.provision_function("sealer"), {})
        s3 = aws.client("s3")
        muni_env = prefecture.municipality_tier.env
        months_seen = {month_jst(clock())}
        t = time.perf_counter()
        cs_total = month.file_count + 1  # + the identical file dropped twice
        with _progress(console) as progress:
            cs_task = progress.add_task("municipality CS: export files", total=cs_total)
            for code, files in month.files.items():
                bucket = names.drop_zone_bucket(muni_env, code)
                for name, data in files:
                    s3.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=data)
            first_code, first_files = next(iter(month.files.items()))
            s3.put_object(Bucket=names.drop_zone_bucket(muni_env, first_code),
                          Key=f"incoming/resent-{first_files[0][0]}", Body=first_files[0][1])
            while runner.process_new_objects():
                progress.update(cs_task, completed=_cs_invocations(runner))
            progress.update(cs_task, completed=_cs_invocations(runner))
            timings["cs"] = time.perf_counter() - t

            inbound = names.inbound_queue(prefecture_tier(prefecture.code))
            injected = _inject_faults(Names.queue_url(prefecture.env, inbound),
                                      Names.queue_url(prefecture.env, names.dead_letter_queue(inbound)))
            tier_task = progress.add_task("prefecture → national: queue batches", total=None)

            def on_progress(p) -> None:
                progress.update(tier_task, completed=p.invocations)

            t = time.perf_counter()
            summary = runner.run_until_idle(timeout_s=1800, on_progress=on_progress)
            timings["tiers"] = time.perf_counter() - t
            progress.update(tier_task, total=summary.invocations, completed=summary.invocations)
        months_seen.add(month_jst(clock()))
        console.print(f"[bold]4.[/] CS processed {cs_total} files in {timings['cs']:.1f} s; injected: {injected}")
        console.print(f"[bold]5.[/] prefecture and national tiers idle after {summary.invocations} invocations "
                      f"({timings['tiers']:.1f} s); function logs in {log_path}")

        for m in sorted(months_seen):
            rows = reconcile_deployment(deployment, m, prefecture.code)
            if any(r.sent or r.dead_lettered for r in rows):
                print_reconciliation(rows, m, console)
        _redrive(console, deployment, runner, clock, months_seen, prefecture.code)
        _run_ledger_watches(runner, deployment, names, clock)
        _run_reconciliations(console, runner, deployment, names, clock)
        print_alarm_status(console, monitoring.evaluate(), title="Alarms after the update notices")

        t = time.perf_counter()
        if deployment.agencies:
            verdicts: list = []
            _agency_traffic(console, deployment, env, runner, lambda: verdicts.extend(monitoring.evaluate()), clock)
            print_alarm_status(console, verdicts, title="Alarms right after the refused requests and the scan")
        timings["provision"] = time.perf_counter() - t
        from jukinet_ops.card_demo import run_card_demo

        run_card_demo(console, deployment, env, runner, month=month_jst(clock()))
        print_alarm_status(console, monitoring.evaluate(), title="Alarms after the counter step")
        print_notifications(console, notifications)
        print_monitoring_report(console, deployment, notifications.path, clock)
        timings["total"] = time.perf_counter() - started
        console.print(f"Demo finished in {timings['total']:.0f} s (synth {timings['synth']:.0f}, deploy "
                      f"{timings['deploy']:.0f}, CS {timings['cs']:.0f}, tiers {timings['tiers']:.0f}, "
                      f"provision {timings['provision']:.0f}).")
    return 0


def _agency_traffic(console: Console, deployment, env, runner, after_attacks, clock: Clock) -> None:
    from infra.naming import Names
    from jukinet_ops.agency_traffic import recipient_principals, run_demo_traffic, sample_residents
    from jukinet_ops.local.api import LocalApi
    from jukinet_ops.provision import (
        disclose,
        key_source,
        monthly_statistics,
        print_disclosure,
        print_verify,
        provision_tables,
        stats_table,
        verify_log,
    )

    with LocalApi(env, runner, credentials={}, api=Names.of(deployment).provision_api()) as api:
        principals = recipient_principals(deployment, runner, api)
        api.principals.update({p.access_key_id: p for p in principals.values()})
        console.print(f"[bold]6.[/] provision API served at {api.url} (the deployed private REST API; SigV4 "
                      f"checked against local credentials of {len(principals) - 1} recipient roles)")
        residents = sample_residents(deployment, 200)
        with console.status("Agencies calling the provision API…") as status:
            report = run_demo_traffic(api, principals, deployment, runner, residents,
                                      on_step=lambda what: status.update(f"Agencies: {what}…"),
                                      after_attacks=after_attacks)
    served = Table(title="Provision API: requests served")
    for col in ("recipient", "request", "answered"):
        served.add_column(col, justify="right" if col == "answered" else "left")
    for (who, what), n in sorted(report.served.items()):
        served.add_row(who, what, str(n))
    console.print(served)
    refused = Table(title="Provision API: requests refused (each logged and counted)")
    for col in ("caller", "request", "status", "refused by / code"):
        refused.add_column(col)
    for who, what, status_code, code in report.refused:
        if code.isupper():
            reason = f"handler: {code}"
        elif "explicit deny" in code:
            reason = "gateway: resource policy, explicit deny"
        elif "not authorized" in code:
            reason = "gateway: resource policy, no allow"
        else:
            reason = f"gateway: {code[:60]}"
        refused.add_row(who, what, str(status_code), reason)
    console.print(refused)
    batch = report.batch
    if batch.get("status") == "complete":
        outcomes = ", ".join(f"{k} {v}" for k, v in batch["outcomes"].items() if v)
        console.print(f"   batch (一括提供) {batch['job_id']}: {batch['rows']:,} rows in {batch['seconds']:.1f} s "
                      f"({batch['rows'] / batch['seconds']:,.0f} rows/s) — {outcomes}; results in "
                      f"{len(batch['result_keys'])} part(s) under out/chikyosai/")
    else:
        console.print(f"   [red]batch did not complete:[/] {batch}")
    tables = provision_tables(deployment)
    log = tables.log()
    now = clock()
    seal_key = key_source(None, tables.seal_key)  # the deployment's key, by its configured alias
    month = month_jst(now)
    console.print(stats_table(monthly_statistics(log, month, deployment.agencies), month))
    if report.disclosure_code:
        console.print(f"Disclosure (提供状況の開示) for resident {report.disclosure_code}:")
        print_disclosure(disclose(log, report.disclosure_code, None, None, public_key=seal_key, now=now), console)
    # The chains of the residents the agencies asked about one by one (the batch's 2,000 are
    # checked the same way by `jukinet verify`; on the embedded AWS every chain read scans the
    # table, so the demo keeps to these).
    print_verify(verify_log(log, [], [r["code"] for r in residents], seal_key, now=now, archive=tables.archive()),
                 console)
    console.print("   Entries of this hour are checked by their hash chains; the sealer signs every hour at :10 "
                  "(`jukinet verify` then checks them against the hour's seal).")


def _run_ledger_watches(runner, deployment, names, clock: Clock) -> None:
    """Each processing tier's ledger watch once, as its five-minute schedule would fire it now
    (``run_until_idle`` fires no schedules): aged gaps and notices overdue (decision 0030)."""
    from infra.naming import NATIONAL, prefecture_tier

    at = clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for tier in (*(prefecture_tier(p.code) for p in deployment.prefectures), NATIONAL):
        runner.invoke(names.ledger_watch_function(tier), {"source": "aws.events", "detail-type": "Scheduled Event",
                                                          "time": at, "resources": [], "detail": {}})


def _run_reconciliations(console: Console, runner, deployment, names, clock: Clock) -> None:
    """Each processing tier's nightly reconciliation once, fired now as its 01:30 JST schedule
    would fire it (decision 0033): the previous day's month and the previous month, a report in
    the tier's security-reports bucket, ``ReconciliationMismatches`` for the alarm."""
    from infra.naming import NATIONAL, prefecture_tier

    at = clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for tier in (*(prefecture_tier(p.code) for p in deployment.prefectures), NATIONAL):
        result = runner.invoke(names.reconciliation_function(tier), {
            "source": "aws.events", "detail-type": "Scheduled Event", "time": at, "resources": [], "detail": {}})
        if not result.ok:
            console.print(f"[red]Nightly reconciliation of {tier} failed:[/] {result.error}")
            continue
        r = result.response
        console.print(f"Nightly reconciliation of {tier} (months {', '.join(r['months'])}): "
                      f"{len(r['mismatches'])} mismatch(es); report {r['reports'][0]} (and .csv)", highlight=False)


def print_notifications(console: Console, notifications, shown: int = 6) -> None:
    """A few lines: how many notifications were sent, by change, and the last ones that raised
    or cleared an alarm (time, tier, alarm, change; the reasons are in the file)."""
    lines = notifications.lines()
    changes: dict[str, int] = {}
    for line in lines:
        change = line.split("  ")[3]
        changes[change] = changes.get(change, 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in sorted(changes.items(), key=lambda kv: -kv[1]))
    console.print(f"[bold]Notifications sent[/] to the tiers' alarm topics (e-mail, chat): {len(lines)} "
                  f"({summary or 'none'}); each with its reason in {notifications.path}")
    alarming = [line for line in lines if "ALARM" in line.split("  ")[3].replace("INSUFFICIENT_DATA", "")]
    for line in alarming[-shown:]:
        console.print("   " + "  ".join(line.split("  ")[:4]), markup=False, highlight=False, soft_wrap=True)
    if len(alarming) > shown:
        console.print(f"   … and {len(alarming) - shown} earlier")


def print_monitoring_report(console: Console, deployment, notifications: Path, clock: Clock) -> None:
    """The month's monitoring report (``jukinet monitoring-report``) in one screen, read from the
    embedded AWS like any deployed environment; the Markdown, HTML and CSV go to .jukinet/reports/."""
    from jukinet.services.monitoring_report import summary_lines, write_report
    from jukinet_ops.monitoring_report import monitoring_report

    now = clock()
    report = monitoring_report(deployment, month_jst(now), now=now, notifications=notifications)
    paths = write_report(report, WORK_DIR / "reports")
    lines = summary_lines(report)
    console.print(f"[bold]{lines[0]}[/] — {', '.join(p.name for p in paths)} in {paths[0].parent}",
                  highlight=False)
    for line in lines[1:]:
        finding = line.startswith("所見") or line.startswith("  - ")
        console.print(line, style=("green" if report.clean else "bold red") if finding else None, markup=False,
                      highlight=False, soft_wrap=True)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _cs_invocations(runner) -> int:
    return sum(s.invocations for name, s in runner.stats.items() if "-cs-" in name)


def _inject_faults(queue_url: str, dead_letter_queue_url: str) -> str:
    """What a real network meets: two redelivered messages, a tampered one, a poison one, and
    a genuine message that exhausted its receives during an outage (SQS moved it to the
    dead-letter queue, without a reason: the step after the reconciliation redrives it)."""
    sqs = aws.client("sqs")
    for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60).get("Messages", []):
        sqs.send_message(QueueUrl=dead_letter_queue_url, MessageBody=m["Body"])
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=3, VisibilityTimeout=0).get("Messages", [])
    for m in got[:2]:
        sqs.send_message(QueueUrl=queue_url, MessageBody=m["Body"])  # at-least-once delivery
    if got:
        envelope = json.loads(got[-1]["Body"])
        payload = Payload.from_bytes(base64.b64decode(envelope["payload"]))
        notice = payload.notices[0]
        if notice.get("facts"):
            notice["facts"]["address"] = "改ざんされた住所"
        else:
            notice["change_date"] = "2003-01-31"
        envelope["payload"] = base64.b64encode(Payload(payload.sender, payload.created, payload.notices[:1]).to_bytes()).decode()
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
    sqs.send_message(QueueUrl=queue_url, MessageBody="garbage that is not a signed message")
    return (f"{min(2, len(got))} redelivered messages, 1 identical file dropped twice, "
            f"{1 if got else 0} tampered message (1 notice), 1 poison message, 1 message moved to the dead-letter "
            "queue after failed receives (an outage)")


def _redrive(console: Console, deployment, runner, clock: Clock, months: set[str], prefecture_code: str) -> None:
    """The dead-letter queues as `jukinet redrive` counts them; the outage's message put back
    (`--reason none --apply`), the tiers run, and the reconciliation balances again."""
    import io

    from jukinet.domain.reconciliation import totals
    from jukinet_ops.reconcile import reconcile_deployment
    from jukinet_ops.redrive import NO_REASON, Redrive, print_reports
    from jukinet_ops.report import print_reconciliation

    tool = Redrive(deployment, clock=clock)
    text = io.StringIO()
    print_reports(tool.run(), apply=False, out=text)
    console.print("[bold]Dead-letter queues[/] (`jukinet redrive`, a dry run):", highlight=False)
    console.print(text.getvalue().rstrip(), markup=False, highlight=False)
    text = io.StringIO()
    print_reports(tool.run(reasons=[NO_REASON], apply=True), apply=True, out=text)
    console.print("The outage is over: `jukinet redrive --reason none --apply`:", highlight=False)
    console.print(text.getvalue().rstrip(), markup=False, highlight=False)
    runner.run_until_idle(timeout_s=600)
    months.add(month_jst(clock()))
    for m in sorted(months):
        rows = reconcile_deployment(deployment, m, prefecture_code)
        if not any(r.sent or r.dead_lettered for r in rows):
            continue
        if all(r.balanced for r in rows):
            total = totals(rows, m)
            console.print(f"[green]Reconciliation {m} after the redrive: every municipality balances[/] (sent "
                          f"{total.sent:,}, stored at the prefecture {total.stored_prefecture:,} and nationally "
                          f"{total.stored_national:,}).")
        else:
            print_reconciliation(rows, m, console, only_problems=True)
