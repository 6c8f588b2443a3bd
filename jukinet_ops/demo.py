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
6. print the reconciliation (the outage's municipality is short), the dead-letter
   queues as ``jukinet redrive`` counts them, redrive the outage's message and show the
   reconciliation balancing again, then the alarm states, evaluated from the metrics the
   functions emitted;
7. serve the deployed provision API locally (SigV4) and play a month of agency traffic —
   look-ups, searches, the prefecture's own use, one batch, and requests that must be
   refused — then print the month's provision statistics, one resident's disclosure and the
   provision log's verification; then the counter step (``card_demo.py``): resident cards
   issued, authenticated elsewhere, suspended and locked, and a wide-area copy (広域交付) at
   松本市's counter for a 長野市 resident — its PDF in ``.jukinet/reports/`` — and one refused;
8. show the notifications sent: every alarm transition that notified a tier's alarm topic
   (e-mail, chat) is a line of ``.jukinet/notifications.log`` (time, tier, alarm, old→new,
   reason); the last few are printed;
9. the month's monitoring report (``jukinet monitoring-report``): per tier in one line, and
   the finding — the demo's forged message and refused requests are its incidents.

What it prints is ``jukinet_ops/demo_report.py``'s: one screen by default (each stage in a
line or two, only the rows that need attention), every table with ``verbose`` (decision 0045).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jukinet.adapters import aws
from jukinet.clock import Clock, month_jst, system_clock, today_jst
from jukinet.domain.message import Payload
from jukinet_ops.demo_report import DemoConsole, DemoOutput, NightlyRun, Timings

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_ROOT / ".jukinet"


def run_demo(*, notices: int = 18_692, seed: int = 2003, deployment_name: str | None = None,
             cdk_out: str | None = None, console: Console | None = None, clock: Clock = system_clock,
             verbose: bool = False, resynth: bool = False, workers: int = 2) -> int:
    """The demo. ``clock`` is the one the embedded AWS, its functions and the reports share:
    the functions run in this process and read the system clock, so only a moved process
    clock (``scripts/test-any-date``) moves them all together. ``verbose``: every table, not
    the one-screen summary (``demo_report.DemoOutput``). The assembly in ``.jukinet/cdk.out`` is
    reused when everything synthesis reads is unchanged since it was synthesized (decision
    0054); ``resynth``: synthesize anyway. ``workers``: the runner's worker processes (queue batches
    of different functions run concurrently, decision 0057; 0: one invocation at a time, here)."""
    from infra.config import load_deployment
    from infra.naming import Names, prefecture_tier
    from embedded_aws.template import moto_cloudformation_models
    from embedded_aws import (
        FlowLogRecorder,
        LocalMonitoring,
        LocalRunner,
        MotoServer,
        NotificationLog,
        deploy_assembly,
        local_credentials,
    )
    from jukinet_ops.demo_data import generate_month
    from jukinet_ops.reconcile import reconcile_deployment

    console = console or DemoConsole()
    output = DemoOutput(console, verbose=verbose)
    deployment = load_deployment(deployment_name)
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    timings: dict[str, float] = {}
    WORK_DIR.mkdir(exist_ok=True)
    started = time.perf_counter()

    municipalities = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
    with ExitStack() as stack:
        t = time.perf_counter()
        reused = False
        if cdk_out:
            out = Path(cdk_out)
            server = stack.enter_context(MotoServer(log_file=WORK_DIR / "moto.log"))
            month = generate_month(municipalities, notices=notices, seed=seed)
        else:
            # Synthesis is node on one core: meanwhile the other starts the embedded AWS (its
            # imports), generates the month and imports moto's CloudFormation models.
            with console.status("Synthesizing the CDK app (cdk synth) and starting the embedded AWS…"), \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth") as pool:
                synthesized = pool.submit(_synth, deployment_name, today_jst(clock()), resynth)
                server = stack.enter_context(MotoServer(log_file=WORK_DIR / "moto.log"))
                month = generate_month(municipalities, notices=notices, seed=seed)
                moto_cloudformation_models()
                out, reused = synthesized.result()
        timings["synth"] = time.perf_counter() - t
        output.assembly(out, timings["synth"], reused=reused)

        t = time.perf_counter()
        with console.status("Deploying the assembly into the embedded AWS…"):
            env = deploy_assembly(out, server.endpoint_url, default_region=deployment.region)
        timings["deploy"] = time.perf_counter() - t
        resources = sum(len(s.resources) for s in env.stacks.values())
        output.deployed(server.endpoint_url, len(env.stacks), resources, timings["deploy"],
                        [n.feature for n in env.not_emulated])

        # The operator side of the demo (uploads, injections, reconciliation) talks to the
        # embedded AWS like any AWS client.
        os.environ.update({"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": deployment.region,
                           **local_credentials(server.endpoint_url, deployment.region)})
        aws.reset_clients()

        output.month(month.valid_rows, month.malformed_rows, month.file_count, len(municipalities))

        log_path = WORK_DIR / "demo-functions.log"
        log_stream = stack.enter_context(open(log_path, "w", encoding="utf-8"))
        # share_modules: one import of the deployed code serves every function (each still runs
        # with its own environment; the handlers cache their runtime per environment). Separate
        # copies per function cost ~0.5 s of cold start each, 40 s for Nagano's 79 functions.
        # The functions' EMF metrics become CloudWatch metric data in the embedded AWS, and the
        # deployed alarms are evaluated from them (embedded_aws/monitoring/).
        # Every alarm transition that notifies a tier's topic is also written to a log: what
        # would have been sent by e-mail or chat (shown at the end).
        notifications = NotificationLog(WORK_DIR / "notifications.log", truncate=True)
        monitoring = stack.enter_context(LocalMonitoring(env, stream=log_stream, notifications=notifications))
        # Each invocation's AWS calls and sockets become the flow-log and DNS query-log records its
        # VPC would write, so the network watch's alarms see the demo's traffic (embedded_aws/flow_logs.py).
        flow_logs = stack.enter_context(FlowLogRecorder(env.client, now=lambda: clock().timestamp()).installed())
        runner = stack.enter_context(LocalRunner(env, log_stream=monitoring.sink, share_modules=True, flow_logs=flow_logs,
                                                 cache_dir=Path(tempfile.mkdtemp(prefix="jukinet-code-")),
                                                 workers=workers))
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
            taken = 0  # files delivered to the CSs: several per invocation (decision 0051)
            while delivered := runner.process_new_objects():
                taken += delivered
                progress.update(cs_task, completed=taken)
            progress.update(cs_task, completed=taken)
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
        output.processed(cs_total, timings["cs"], injected, summary.invocations, timings["tiers"], log_path)

        for m in sorted(months_seen):
            rows = reconcile_deployment(deployment, m, prefecture.code)
            if any(r.sent or r.dead_lettered for r in rows):
                output.reconciliation(rows, m)
        _redrive(output, deployment, runner, clock, months_seen, prefecture.code)
        _run_ledger_watches(runner, deployment, names, clock)
        output.nightly(_run_reconciliations(runner, deployment, names, clock))
        output.alarms(monitoring.evaluate(), title="Alarms after the update notices")

        t = time.perf_counter()
        if deployment.agencies:
            verdicts: list = []
            _agency_traffic(output, deployment, env, runner, lambda: verdicts.extend(monitoring.evaluate()), clock,
                            month.residents)
            output.alarms(verdicts, title="Alarms right after the refused requests and the scan")
        timings["provision"] = time.perf_counter() - t
        from jukinet_ops.card_demo import run_card_demo
        from jukinet_ops.card_stats import card_statistics

        counter = run_card_demo(console, deployment, env, runner, reports_dir=WORK_DIR / "reports",
                                named_by=month.named_by)
        if counter:
            output.wide_area_copies(counter["copy"], REPO_ROOT)
            if "special_move" in counter:
                output.special_move(counter["special_move"])
            card_month = month_jst(clock())
            output.card_stats(card_statistics(deployment, card_month), card_month)
        output.alarms(monitoring.evaluate(), title="Alarms after the counter step")
        output.notifications(notifications.lines(), notifications.path)
        _monitoring_report(output, deployment, notifications.path, clock)
        timings["total"] = time.perf_counter() - started
        output.finished(Timings(**timings))
    return 0


def _synth(deployment_name: str | None, today: dt.date, resynth: bool) -> tuple[Path, bool]:
    """The assembly in ``.jukinet/cdk.out``: (its path, whether it was reused unchanged)."""
    from jukinet_ops.synth import SYNTH_KEY_FILE, synth_cached

    if resynth:
        (WORK_DIR / "cdk.out" / SYNTH_KEY_FILE).unlink(missing_ok=True)
    return synth_cached(deployment_name, WORK_DIR / "cdk.out", today=today)


def _agency_traffic(output: DemoOutput, deployment, env, runner, after_attacks, clock: Clock,
                    month_residents: list[str]) -> None:
    """The provision step. ``month_residents``: whom the month's notices named — the residents
    the agencies ask about and the batch's rows are the active ones among them, read by key
    (a scan of the national table costs the embedded AWS the whole table per page)."""
    from infra.naming import Names
    from jukinet_ops.agency_traffic import recipient_principals, run_demo_traffic, sample_residents
    from embedded_aws import LocalApi
    from jukinet_ops.provision import disclose, key_source, monthly_statistics, provision_tables, verify_log

    console = output.console
    with LocalApi(env, runner, credentials={}, api=Names.of(deployment).provision_api()) as api:
        principals = recipient_principals(deployment, runner, api)
        api.principals.update({p.access_key_id: p for p in principals.values()})
        output.provision_api(api.url, len(principals) - 1)
        residents = sample_residents(deployment, 200, candidates=month_residents)
        with console.status("Agencies calling the provision API…") as status:
            report = run_demo_traffic(api, principals, deployment, runner, residents,
                                      on_step=lambda what: status.update(f"Agencies: {what}…"),
                                      after_attacks=after_attacks, candidates=month_residents)
    output.traffic(report)
    tables = provision_tables(deployment)
    log = tables.log()
    now = clock()
    seal_key = key_source(None, tables.seal_key)  # the deployment's key, by its configured alias
    month = month_jst(now)
    output.provision_stats(monthly_statistics(log, month, deployment.agencies), month)
    if report.disclosure_code:
        output.disclosure(disclose(log, report.disclosure_code, None, None, public_key=seal_key, now=now))
    # The chains of the residents the agencies asked about one by one (the batch's 2,000 are
    # checked the same way by `jukinet verify`; on the embedded AWS every chain read scans the
    # table, so the demo keeps to these).
    output.verify(verify_log(log, [], [r["code"] for r in residents], seal_key, now=now, archive=tables.archive()))


def _run_ledger_watches(runner, deployment, names, clock: Clock) -> None:
    """Each processing tier's ledger watch once, as its five-minute schedule would fire it now
    (``run_until_idle`` fires no schedules): aged gaps and notices overdue (decision 0030)."""
    from infra.naming import NATIONAL, prefecture_tier

    at = clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for tier in (*(prefecture_tier(p.code) for p in deployment.prefectures), NATIONAL):
        runner.invoke(names.ledger_watch_function(tier), {"source": "aws.events", "detail-type": "Scheduled Event",
                                                          "time": at, "resources": [], "detail": {}})


def _run_reconciliations(runner, deployment, names, clock: Clock) -> list[NightlyRun]:
    """Each processing tier's nightly reconciliation once, fired now as its 01:30 JST schedule
    would fire it (decision 0033): the previous day's month and the previous month, a report in
    the tier's security-reports bucket, ``ReconciliationMismatches`` for the alarm."""
    from infra.naming import NATIONAL, prefecture_tier

    at = clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs = []
    for tier in (*(prefecture_tier(p.code) for p in deployment.prefectures), NATIONAL):
        result = runner.invoke(names.reconciliation_function(tier), {
            "source": "aws.events", "detail-type": "Scheduled Event", "time": at, "resources": [], "detail": {}})
        if not result.ok:
            runs.append(NightlyRun(tier, error=str(result.error)))
            continue
        r = result.response
        runs.append(NightlyRun(tier, tuple(r["months"]), len(r["mismatches"]), r["reports"][0]))
    return runs


def _monitoring_report(output: DemoOutput, deployment, notifications: Path, clock: Clock) -> None:
    """The month's monitoring report (``jukinet monitoring-report``), read from the embedded AWS
    like any deployed environment; the Markdown, HTML and CSV go to .jukinet/reports/."""
    from jukinet.services.monitoring_report import write_report
    from jukinet_ops.monitoring_report import monitoring_report

    now = clock()
    report = monitoring_report(deployment, month_jst(now), now=now, notifications=notifications)
    output.monitoring_report(report, write_report(report, WORK_DIR / "reports"))


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


def _redrive(output: DemoOutput, deployment, runner, clock: Clock, months: set[str], prefecture_code: str) -> None:
    """The dead-letter queues as `jukinet redrive` counts them; the outage's message put back
    (`--reason none --apply`), the tiers run, and the reconciliation balances again."""
    from jukinet_ops.reconcile import reconcile_deployment
    from jukinet_ops.redrive import NO_REASON, Redrive

    tool = Redrive(deployment, clock=clock)
    output.dead_letters(tool.run())
    applied = tool.run(reasons=[NO_REASON], apply=True)
    runner.run_until_idle(timeout_s=600)
    months.add(month_jst(clock()))
    after = {}
    for m in sorted(months):
        rows = reconcile_deployment(deployment, m, prefecture_code)
        if any(r.sent or r.dead_lettered for r in rows):
            after[m] = rows
    output.redriven(applied, after)
