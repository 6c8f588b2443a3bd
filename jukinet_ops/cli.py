"""jukinet: the product's command-line tool. Every command hangs off it.

    jukinet demo         run a month of Nagano's update notices through all three tiers on the
                         embedded AWS (no account, no Docker) and print the reconciliation
    jukinet reconcile    per municipality and month: sent, rejected, stored at each tier,
                         dead-lettered, gaps — against AWS or the embedded AWS
    jukinet synth        synthesize the CDK app into cdk.out (offline)
    jukinet verify       check the provision log: each day against its signed seal, chains of
                         days not sealed yet and of named residents; exit 1 on any problem
    jukinet disclose     one resident's provisions (提供状況の開示) with the check of their chain
    jukinet provision-stats
                         records provided in a month per recipient, affair and function, or per
                         prefecture (--by prefecture); --check compares the counters with the log
    jukinet monitoring-report
                         the month's monitoring report per tier (alarms, refusals, signature
                         failures, network rejects, break-glass, isolations, seals) and the
                         finding, as Markdown, HTML and CSV
    jukinet card-stats   resident cards per municipality and month: issued, suspended, revoked,
                         authentications ok and refused by reason (docs/card.md); wide-area
                         copies requested, issued, refused by code, timed out, issued elsewhere
    jukinet checklist    the security checklist per municipality, read from the deployed
                         environment (Markdown + HTML reports); exit 1 on any miss
    jukinet access-review
                         who holds which role in which tier (configuration and deployed trust
                         policies), contractors' expiry; exit 1 if an expired contract is deployed
    jukinet isolate / restore / isolation-status
                         emergency plan (緊急時対応): cut one municipality, prefecture or agency off
                         within a minute, nothing lost, and restore it (docs/emergency.md)
    jukinet openapi      write docs/openapi.json from the provision API's code (--check: exit 1
                         if the committed document is stale)
    jukinet up / down    a local environment that stays up: the deployed assembly on the embedded
                         AWS, functions running from their triggers, the provision API on a fixed
                         port, client settings in .jukinet/env (docs/local-mode.md)
    jukinet status       tiers, queues with their depths, dead letters, alarms in ALARM, isolation holds
    jukinet redrive      put dead-lettered messages back into their queue once the cause is fixed:
                         a dry run counting per reason, --apply to move them (recorded); channel
                         messages past their deadline are skipped and counted

Every command that acts on an environment takes --local: the one `jukinet up` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys

from jukinet.clock import Clock, month_jst, system_clock, today_jst

# What the `ops` extra (pyproject.toml) brings, by the module a command imports: a plain
# `pip install jukinet` has the runtime only (what the Lambda functions bundle).
OPS_MODULES = {"rich": "rich", "aws_cdk": "aws-cdk-lib", "constructs": "constructs", "cdk_nag": "cdk-nag",
               "moto": "moto[server]", "flask": "moto[server]"}
OPS_INSTALL = "pip install 'jukinet[ops]'"


def missing_ops_packages() -> list[str]:
    """The packages of the `ops` extra that are not installed (none in a full install)."""
    missing = []
    for module, package in OPS_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent that fails to import, or sys.modules[module] is None
            found = False
        if not found and package not in missing:
            missing.append(package)
    return missing


def _ops_missing_message(packages: list[str]) -> str:
    return (f"jukinet: install jukinet[ops]: the operator commands need {', '.join(packages)}, which a plain "
            f"install of jukinet (the Lambda runtime's dependencies only) leaves out. Run: {OPS_INSTALL}")


def _month(text: str) -> str:
    try:
        return dt.datetime.strptime(text, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"month must be YYYY-MM, got {text!r}") from None


def _add_deployment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deployment", default=None, help="deployment configuration name (default: nagano-demo)")


def cmd_reconcile(args: argparse.Namespace) -> int:
    from infra.config import load_deployment
    from jukinet_ops.reconcile import reconcile_channel, reconcile_deployment
    from jukinet_ops.report import print_channel, print_reconciliation, reconciliation_json

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    rows = reconcile_deployment(deployment, args.month, args.prefecture)
    channel = reconcile_channel(deployment, args.month, args.now, args.prefecture)
    if args.json:
        print(reconciliation_json(rows, args.month, channel))
    else:
        print_reconciliation(rows, args.month, only_problems=args.problems_only)
        if channel:
            print_channel(channel, args.month, only_problems=args.problems_only)
    unbalanced = any(not r.balanced for r in rows) or any(c.problems for c in channel)
    return 1 if args.strict and unbalanced else 0


def cmd_up(args: argparse.Namespace) -> int:
    from jukinet_ops.up import run_up

    if not args.cdk_out and _checkout_missing(args):
        return 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] - `jukinet up > log` is followed live
    return run_up(clock=args.clock, deployment_name=args.deployment, cdk_out=args.cdk_out,
                  port_base=args.port_base, seed_month=args.seed_month, seed_notices=args.seed_notices)


def cmd_down(args: argparse.Namespace) -> int:
    from jukinet_ops.up import run_down

    return run_down()


def cmd_status(args: argparse.Namespace) -> int:
    from infra.config import load_deployment
    from jukinet_ops.status import collect_status, print_status, status_json
    from jukinet_ops.up import state_dir

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    status = collect_status(deployment, state_dir=state_dir() if args.local else None)
    if args.json:
        print(status_json(status))
    else:
        print_status(status)
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from infra.config import load_deployment
    from jukinet_ops.redrive import Redrive, RedriveError, print_reports

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    tool = Redrive(deployment, clock=args.clock)
    try:
        reports = tool.run(tiers=args.tier or (), reasons=args.reason or (), apply=args.apply)
    except RedriveError as exc:
        print(f"jukinet redrive: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"applied": args.apply, "queues": [r.to_dict() for r in reports]}, ensure_ascii=False,
                         indent=2))
    else:
        print_reports(reports, apply=args.apply)
    return 0


def _use_local(args: argparse.Namespace) -> None:
    """``--local``: act on the environment ``jukinet up`` runs, as its ``.jukinet/env`` says."""
    from embedded_aws.client_env import LocalEnvironmentFiles, read_env_file
    from jukinet_ops.up import state_dir

    variables = read_env_file(LocalEnvironmentFiles(state_dir()))
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ[name] = variables[name]
    os.environ.pop("AWS_PROFILE", None)  # the file's default profile: the embedded AWS's local credentials
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    if getattr(args, "deployment", None) is None:
        args.deployment = variables.get("JUKINET_DEPLOYMENT")
    if hasattr(args, "endpoint_url") and not args.endpoint_url:
        args.endpoint_url = variables["AWS_ENDPOINT_URL"]


# Commands that act on a deployed environment: each takes --local.
LOCAL_COMMANDS = ("reconcile", "verify", "disclose", "provision-stats", "card-stats", "checklist", "access-review",
                  "isolate", "restore", "isolation-status", "status", "redrive", "monitoring-report")


def _checkout_missing(args: argparse.Namespace) -> bool:
    """Synthesis runs the repository's CDK app (app.py, cdk.json, node_modules): an installed
    jukinet outside a checkout says so (demo and up can still take an assembly: --cdk-out)."""
    from jukinet_ops.synth import REPO_ROOT

    if (REPO_ROOT / "app.py").is_file() and (REPO_ROOT / "cdk.json").is_file():
        return False
    hint = " or give a synthesized assembly with --cdk-out" if hasattr(args, "cdk_out") else ""
    print(f"jukinet {args.command}: synthesis needs a checkout of the jukinet repository (app.py, cdk.json; "
          f"node_modules from scripts/bootstrap), not found beside {REPO_ROOT}: run it from the checkout's "
          f".venv{hint}", file=sys.stderr)
    return True


def cmd_synth(args: argparse.Namespace) -> int:
    from jukinet_ops.synth import synth

    if _checkout_missing(args):
        return 2
    out = synth(args.deployment, args.out, today=args.today or today_jst(args.now))
    print(f"cloud assembly written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jukinet_ops.demo import run_demo

    if not args.cdk_out and _checkout_missing(args):
        return 2
    return run_demo(notices=args.notices, seed=args.seed, deployment_name=args.deployment, cdk_out=args.cdk_out,
                    clock=args.clock, verbose=args.verbose, resynth=args.resynth, workers=args.workers)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"workers must be a whole number, 0 or more, got {text!r}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, got {text!r}") from None


def _resident_code(text: str) -> str:
    from jukinet.domain.codes import ResidentCode
    from jukinet.domain.errors import ValidationError

    try:
        return ResidentCode.parse(text).value
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"resident code {text!r}: {exc.detail}") from None


def _provision_tables(args: argparse.Namespace):
    """The deployment and its provision tables, against AWS or (``--endpoint-url``) the embedded AWS."""
    from infra.config import load_deployment
    from jukinet_ops.provision import provision_tables

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    return deployment, provision_tables(deployment)


def _provision_log(args: argparse.Namespace):
    """The deployment's provision log, against AWS or (``--endpoint-url``) the embedded AWS."""
    deployment, tables = _provision_tables(args)
    return deployment, tables.log()


def _seal_key(args: argparse.Namespace, tables) -> bytes | None:
    """The deployment's seal public key, pinned (``--public-key`` or KMS by the configured
    alias); None, with the reason on stderr, when it cannot be had."""
    from jukinet.adapters import aws
    from jukinet_ops.provision import key_source

    key_file = None
    if getattr(args, "public_key", None):
        with open(args.public_key, "rb") as fh:
            key_file = fh.read()
    try:
        return key_source(key_file, tables.seal_key)
    except Exception as exc:
        if aws.error_code(exc) in ("AccessDeniedException", "NotFoundException", "DisabledException"):
            print(f"jukinet {args.command}: cannot get the seal key's public key ({tables.seal_key}) from KMS "
                  f"({aws.error_code(exc)}); give the published copy with --public-key FILE", file=sys.stderr)
            return None
        raise


def _verify_days(args: argparse.Namespace) -> list[str]:
    from jukinet_ops.provision import day_range, default_days

    days = [d.isoformat() for d in args.day or []]
    if args.date_from or args.date_to:
        end = args.date_to or today_jst(args.now)
        start = args.date_from or end - dt.timedelta(days=6)
        days += day_range(start, end)
    if not days and not args.resident:
        days = default_days(today_jst(args.now))
    return sorted(set(days))


def cmd_verify(args: argparse.Namespace) -> int:
    from jukinet_ops.provision import print_verify, verify_json, verify_log

    try:
        days = _verify_days(args)
    except ValueError as exc:
        print(f"jukinet verify: {exc}", file=sys.stderr)
        return 2
    _, tables = _provision_tables(args)
    key = _seal_key(args, tables)
    if key is None:
        return 2
    report = verify_log(tables.log(), days, args.resident or [], key, now=args.now, archive=tables.archive())
    if args.format == "json":
        print(verify_json(report))
    else:
        print_verify(report)
    return 0 if report.ok else 1


def cmd_disclose(args: argparse.Namespace) -> int:
    from jukinet_ops.provision import disclose, print_disclosure

    if args.date_from and args.date_to and args.date_from > args.date_to:
        print("jukinet disclose: --from must not be after --to", file=sys.stderr)
        return 2
    _, tables = _provision_tables(args)
    key = _seal_key(args, tables)
    if key is None:
        return 2
    result = disclose(tables.log(), args.resident_code, args.date_from, args.date_to, public_key=key,
                      now=args.now)
    if args.format == "json":
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print_disclosure(result)
    return 0 if result["chain"]["verified"] else 1


def cmd_provision_stats(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jukinet.services.provision_audit import check_statistics
    from jukinet_ops import provision as p

    deployment, log = _provision_log(args)
    if args.by == "prefecture":
        rows = p.monthly_statistics_by_prefecture(log, args.month, deployment)
        render = {"csv": p.prefecture_csv, "json": p.prefecture_json, "table": p.prefecture_table}[args.format]
    else:
        rows = p.monthly_statistics(log, args.month, deployment.agencies)
        render = {"csv": p.stats_csv, "json": p.stats_json, "table": p.stats_table}[args.format]
    output = render(rows, args.month)
    if args.format == "table":
        Console().print(output)
    else:
        sys.stdout.write(output if output.endswith("\n") else output + "\n")
    if not args.check:
        return 0
    check = check_statistics(log, args.month, now=args.now)
    p.print_stats_check(check, Console(stderr=args.format != "table"))
    return 0 if check.ok else 1


def cmd_monitoring_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from infra.config import load_deployment
    from jukinet.services.monitoring_report import (
        render_csv,
        render_html,
        render_markdown,
        summary_lines,
        write_report,
    )
    from jukinet_ops.monitoring_report import monitoring_report
    from jukinet_ops.up import state_dir

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    notifications = Path(args.notifications) if args.notifications else (
        state_dir() / "notifications.log" if args.local else None)
    report = monitoring_report(deployment, args.month, now=args.now, notifications=notifications)
    if args.format == "markdown":
        sys.stdout.write(render_markdown(report))
    elif args.format == "html":
        sys.stdout.write(render_html(report))
    elif args.format == "csv":
        sys.stdout.write(render_csv(report))
    else:
        print("\n".join(summary_lines(report)))
    if args.out:
        for path in write_report(report, Path(args.out)):
            print(f"written: {path}", file=sys.stderr)
    return 0 if report.clean else 1


def cmd_card_stats(args: argparse.Namespace) -> int:
    from rich.console import Console

    from infra.config import load_deployment
    from jukinet_ops.card_stats import card_statistics, copies_table, moves_table, stats_csv, stats_json, stats_table

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    rows = card_statistics(deployment, args.month)
    if args.format == "csv":
        sys.stdout.write(stats_csv(rows, args.month))
    elif args.format == "json":
        print(stats_json(rows, args.month))
    else:
        console = Console()
        console.print(stats_table(rows, args.month, all_rows=args.all))
        console.print(copies_table(rows, args.month, all_rows=args.all))
        console.print(moves_table(rows, args.month, all_rows=args.all))
    return 0


def build_parser(now: dt.datetime | None = None) -> argparse.ArgumentParser:
    """The command line; ``now`` (default: the system clock) gives the defaults that depend
    on the date, such as this month."""
    this_month = month_jst(now or system_clock())
    parser = argparse.ArgumentParser(prog="jukinet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo month on the embedded AWS",
                          description="Synthesize the CDK app, deploy the cloud assembly into an embedded moto "
                                      "server on 127.0.0.1, run the deployed functions in-process and push a "
                                      "month of update notices (Nagano, January 2003 volume) through all three "
                                      "tiers; print the reconciliation and the alarm states. The output fits a "
                                      "screen or two: each stage in a line or two, only the rows that need "
                                      "attention (--verbose: every table).")
    demo.add_argument("--notices", type=int, default=18_692, help="valid notices in the month (default: 18,692)")
    demo.add_argument("--seed", type=int, default=2003, help="seed of the synthetic population")
    demo.add_argument("--cdk-out", default=None, help="use this synthesized assembly instead of synthesizing")
    demo.add_argument("--resynth", action="store_true",
                      help="synthesize even if .jukinet/cdk.out holds the assembly of unchanged inputs")
    demo.add_argument("--workers", type=_workers, default=2,
                      help="worker processes running the functions' queue batches concurrently (default 2; "
                           "0: one invocation at a time in this process)")
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="print every table in full (each municipality's reconciliation row, every chain "
                           "verified, every alarm) instead of the one-screen summary")
    _add_deployment(demo)
    demo.set_defaults(func=cmd_demo)

    rec = sub.add_parser("reconcile", help="reconcile notice counts across the tiers",
                         description="Per municipality and month (Japan time): notices sent and rejected by the "
                                     "CS, stored at the prefecture and nationally, dead-lettered, and sequence "
                                     "gaps; with the channel between municipalities, each municipality's "
                                     "requests answered, refused, timed out and pending, and its answers given "
                                     "as home. Rows that do not balance are shown in red with the reason. Uses the "
                                     "standard AWS credential chain; --endpoint-url points it at an embedded AWS.")
    rec.add_argument("--month", type=_month, default=this_month, help="YYYY-MM, Japan time (default: this month)")
    rec.add_argument("--prefecture", default=None, help="only this prefecture (6-digit code, e.g. 200000)")
    rec.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec.add_argument("--problems-only", action="store_true", help="show only rows that do not balance")
    rec.add_argument("--strict", action="store_true", help="exit 1 if any row does not balance")
    _add_deployment(rec)
    rec.set_defaults(func=cmd_reconcile)

    syn = sub.add_parser("synth", help="synthesize the CDK app into a cloud assembly (offline)")
    syn.add_argument("--out", default="cdk.out", help="output directory (default: cdk.out)")
    syn.add_argument("--today", type=_date, default=None, metavar="YYYY-MM-DD",
                     help="the day of synthesis, Japan time: which contractors' roles are still synthesized "
                          "(default: today)")
    _add_deployment(syn)
    syn.set_defaults(func=cmd_synth)

    ver = sub.add_parser("verify", help="verify the provision log against its seals and hash chains",
                         description="Each day (Japan time): a sealed day is checked against its seal — the KMS "
                                     "signature, the signed manifest, and every entry the table holds for the day "
                                     "against it; a day not sealed yet by the hash chains of the residents with "
                                     "entries that day. --resident checks those residents' whole chains, each entry "
                                     "against the seal of its day where sealed (alone, it checks no day). Prints each problem as <resident code>#<n>: <kind>: <detail>; "
                                     "exit 1 on any problem. Default: the last 7 days up to today.")
    ver.add_argument("--day", type=_date, action="append", metavar="YYYY-MM-DD", help="a day to verify (repeatable)")
    ver.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD",
                     help="first day of a range (default: 6 days before --to)")
    ver.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="last day of a range "
                     "(default: today)")
    ver.add_argument("--resident", type=_resident_code, action="append", metavar="CODE",
                     help="verify this resident's chain (repeatable)")
    ver.add_argument("--public-key", metavar="FILE", default=None,
                     help="the deployment's published seal public key (DER or PEM), for an auditor without KMS "
                          "access (default: KMS GetPublicKey of the configured seal key alias — never the key a "
                          "seal names)")
    ver.add_argument("--format", choices=["table", "json"], default="table")
    ver.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    _add_deployment(ver)
    ver.set_defaults(func=cmd_verify)

    dis = sub.add_parser("disclose", help="one resident's provisions (提供状況の開示)",
                         description="Every provision of the resident's identity facts in the period (Japan time): "
                                     "date, recipient, affair, function, fields and provider, with the verification "
                                     "of the resident's whole chain against the hourly seals, the days not sealed yet, and "
                                     "earlier disclosures. Exit 1 if the chain does not verify.")
    dis.add_argument("resident_code", type=_resident_code, metavar="RESIDENT_CODE")
    dis.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="default: the first entry")
    dis.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="default: today")
    dis.add_argument("--public-key", metavar="FILE", default=None,
                     help="the deployment's published seal public key (DER or PEM); default: KMS, configured alias")
    dis.add_argument("--format", choices=["table", "json"], default="table")
    dis.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    _add_deployment(dis)
    dis.set_defaults(func=cmd_disclose)

    sta = sub.add_parser("provision-stats", help="records provided in a month, per recipient and affair",
                         description="The month's provision statistics (Japan time): one row per recipient of the "
                                     "deployment configuration and affair/function with records provided, and the "
                                     "total.")
    sta.add_argument("--month", type=_month, default=this_month, help="YYYY-MM, Japan time (default: this month)")
    sta.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sta.add_argument("--by", choices=["recipient", "prefecture"], default="recipient",
                     help="recipient: per recipient, affair and function (default); prefecture: per prefecture of "
                          "the resident provided and recipient (the seed's table)")
    sta.add_argument("--check", action="store_true",
                     help="also compare the counters with the provisions the log holds for the month (its seals' "
                          "manifests, and the entries of hours not sealed yet); exit 1 on a difference")
    sta.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    _add_deployment(sta)
    sta.set_defaults(func=cmd_provision_stats)

    mon = sub.add_parser("monitoring-report", help="the month's monitoring report per tier (月次監視報告)",
                         description="Per tier and month (Japan time): alarms raised and cleared with their times, "
                                     "refused calls by code, signature failures, gateway refusals, flow-log rejects, "
                                     "break-glass uses, isolation events, the provision log's seals made or missing "
                                     "and its statistics against the log, and the finding. Read from the deployed "
                                     "environment; exit 1 when the finding lists incidents (docs/operations.md).")
    mon.add_argument("--month", type=_month, default=this_month, help="YYYY-MM, Japan time (default: this month)")
    mon.add_argument("--format", choices=["summary", "markdown", "html", "csv"], default="summary",
                     help="what to print (default: a one-screen summary)")
    mon.add_argument("--out", metavar="DIR", default=None,
                     help="also write monitoring-<month>.md, .html and .csv into DIR")
    mon.add_argument("--notifications", metavar="FILE", default=None,
                     help="read alarm transitions from this local record (default with --local: "
                          ".jukinet/notifications.log; otherwise CloudWatch's alarm history)")
    mon.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    _add_deployment(mon)
    mon.set_defaults(func=cmd_monitoring_report)

    cst = sub.add_parser("card-stats", help="resident cards per municipality and month (docs/card.md)",
                         description="Cards issued, suspended, resumed, revoked, expired, PIN resets and locks, "
                                     "authentications answered and refused by reason, per municipality, in a month "
                                     "(Japan time); and the wide-area copies requested at its counters, issued, "
                                     "refused by code and timed out, and its residents' copies issued elsewhere.")
    cst.add_argument("--month", type=_month, default=this_month, help="YYYY-MM, Japan time (default: this month)")
    cst.add_argument("--format", choices=["table", "csv", "json"], default="table")
    cst.add_argument("--all", action="store_true", help="also municipalities with nothing to count")
    cst.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    _add_deployment(cst)
    cst.set_defaults(func=cmd_card_stats)

    from jukinet_ops.checklist import add_arguments as checklist_arguments
    from jukinet_ops.checklist import cmd_checklist

    chk = sub.add_parser("checklist", help="security checklist of a deployed environment, per municipality",
                         description="Inspect the deployed environment through the AWS APIs (the embedded AWS with "
                                     "--endpoint-url) and write one checklist report per municipality, with the "
                                     "prefecture and national tiers' checks it depends on, as Markdown and HTML; "
                                     "print a summary. Exit 1 on any FAIL. Checks: docs/checklist.md.")
    checklist_arguments(chk)
    chk.set_defaults(func=cmd_checklist)

    from jukinet_ops.access_review import add_arguments as access_review_arguments
    from jukinet_ops.access_review import run as access_review_run

    rev = sub.add_parser("access-review", help="who holds which role in which tier (アクセス権の確認)",
                         description="Every person's role per tier, since when and until when (contractors' "
                                     "expiry; flags expired ones and those expiring within 30 days), from the "
                                     "deployment configuration and, when the account is reachable, from the "
                                     "deployed roles' trust policies, with the drift between the two. Exit 1 if an "
                                     "expired contractor's role is still deployed (--strict: on any drift).")
    access_review_arguments(rev)
    _add_deployment(rev)
    rev.set_defaults(func=access_review_run)

    from jukinet_ops.openapi import add_arguments as openapi_arguments
    from jukinet_ops.openapi import run as openapi_run

    oa = sub.add_parser("openapi", help="write docs/openapi.json from the provision API's code",
                        description="Generate the provision API's OpenAPI document; --check exits 1 if it is stale.")
    openapi_arguments(oa)
    oa.set_defaults(func=openapi_run)

    from jukinet_ops.emergency import add_commands as emergency_commands

    emergency_commands(sub)  # isolate, restore, isolation-status (docs/emergency.md)

    from jukinet_ops.up import DEFAULT_PORT_BASE

    up = sub.add_parser("up", help="a local environment that stays up (until Ctrl-C or jukinet down)",
                        description="Synthesize the CDK app (or use --cdk-out), deploy it into the embedded AWS "
                                    "(a moto server on 127.0.0.1:PORT_BASE) and keep running: the functions run "
                                    "from their deployed triggers (bucket notifications, queues, schedules), the "
                                    "provision API is served on 127.0.0.1:PORT_BASE+1, the alarms are evaluated "
                                    "every minute. Prints and writes to .jukinet/env (and an AWS config/"
                                    "credentials pair) everything a client needs. $JUKINET_STATE_DIR moves "
                                    ".jukinet/.")
    up.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help=f"the embedded AWS's port; the provision API gets the next one (default {DEFAULT_PORT_BASE})")
    up.add_argument("--seed-month", action="store_true",
                    help="drop a synthetic month of export files into the drop zones at start")
    up.add_argument("--seed-notices", type=int, default=2_000,
                    help="valid notices in the seeded month (default: 2,000; the demo's Nagano month is 18,692)")
    up.add_argument("--cdk-out", default=None, help="use this synthesized assembly instead of synthesizing")
    _add_deployment(up)
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the environment jukinet up runs",
                          description="Stop `jukinet up` (SIGTERM; it stops the provision API, the functions and the "
                                      "embedded AWS, and removes .jukinet/env and the AWS profiles it wrote). "
                                      "Exit 1 if none is running.")
    down.set_defaults(func=cmd_down)

    st = sub.add_parser("status", help="tiers, queues, dead letters, alarms in ALARM, isolation holds",
                        description="What is running, read through the AWS APIs: each tier's stacks, every queue "
                                    "with its depth, the dead-letter queues, the alarms in ALARM and the isolations "
                                    "in force; with --local also what `jukinet up` last reported (invocations, "
                                    "held work, next scheduled runs). Reads only.")
    st.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    st.add_argument("--json", action="store_true", help="print JSON")
    _add_deployment(st)
    st.set_defaults(func=cmd_status)

    red = sub.add_parser("redrive", help="put dead letters back into their queue once the cause is fixed",
                         description="Per processing tier, count the inbound dead-letter queue's messages per reason "
                                     "(a dry run, the default: nothing moves) or, with --apply, send the selected "
                                     "ones back to the inbound queue and delete them from the dead-letter queue, "
                                     "recorded in SSM /<prefix>/redrive/<tier>/<time> (who, when, queues, reasons, "
                                     "counts). A notice cut out of a message (invalid_notice, not_holder, origin_*) "
                                     "cannot go back: its sender re-sends. Once processed, a redriven message no "
                                     "longer counts as dead-lettered in `jukinet reconcile` (docs/operations.md). "
                                     "With the channel between municipalities, each municipality tier's channel "
                                     "dead-letter queue too (tier muni-<code>); a channel message past its deadline "
                                     "is never redriven (its requester has timed out): skipped and counted.")
    red.add_argument("--tier", action="append", metavar="TIER",
                     help="national, pref-<code> or (with the channel) muni-<code> (repeatable; default: every "
                          "processing tier and, with the channel, every municipality tier)")
    red.add_argument("--reason", action="append", metavar="REASON",
                     help="only dead letters with this jukinet.reason (repeatable; 'none': moved by SQS after failed "
                          "receives; default: every reason)")
    red.add_argument("--apply", action="store_true", help="move them (default: a dry run that only counts)")
    red.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    red.add_argument("--json", action="store_true", help="print JSON")
    _add_deployment(red)
    red.set_defaults(func=cmd_redrive)

    for name in LOCAL_COMMANDS:
        sub.choices[name].add_argument("--local", action="store_true",
                                       help="act on the environment `jukinet up` runs (reads .jukinet/env)")
    return parser


def main(argv: list[str] | None = None, *, clock: Clock = system_clock) -> int:
    """Run one command. The clock is read once, here: every command takes its "now" (today,
    this month, the time of an isolation record…) from ``args.now``."""
    missing = missing_ops_packages()
    if missing:
        print(_ops_missing_message(missing), file=sys.stderr)
        return 2
    try:
        return _run(argv, clock)
    except ModuleNotFoundError as exc:  # one module of the extra left out, though the others are there
        package = OPS_MODULES.get((exc.name or "").partition(".")[0])
        if package is None:
            raise
        print(_ops_missing_message([package]), file=sys.stderr)
        return 2


def _run(argv: list[str] | None, clock: Clock) -> int:
    now = clock()
    args = build_parser(now).parse_args(argv)
    args.now, args.clock = now, clock
    if getattr(args, "local", False):
        from embedded_aws.client_env import NotRunning

        try:
            _use_local(args)
        except NotRunning as exc:
            print(f"jukinet {args.command}: {exc}", file=sys.stderr)
            return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
