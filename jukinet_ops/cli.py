"""jukinet: the product's command-line tool. Every command hangs off it.

    jukinet demo         run a month of Nagano's update notices through all three tiers on the
                         embedded AWS (no account, no Docker) and print the reconciliation
    jukinet reconcile    per municipality and month: sent, rejected, stored at each tier,
                         dead-lettered, gaps — against AWS or the embedded AWS
    jukinet synth        synthesize the CDK app into cdk.out (offline)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from jukinet.domain.notice import JST


def _this_month() -> str:
    return dt.datetime.now(JST).strftime("%Y-%m")


def _month(text: str) -> str:
    try:
        return dt.datetime.strptime(text, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"month must be YYYY-MM, got {text!r}") from None


def _add_deployment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deployment", default=None, help="deployment configuration name (default: nagano-demo)")


def cmd_reconcile(args: argparse.Namespace) -> int:
    from infra.config import load_deployment
    from jukinet_ops.reconcile import reconcile_deployment
    from jukinet_ops.report import print_reconciliation, reconciliation_json

    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    deployment = load_deployment(args.deployment)
    os.environ.setdefault("AWS_DEFAULT_REGION", deployment.region)
    rows = reconcile_deployment(deployment, args.month, args.prefecture)
    if args.json:
        print(reconciliation_json(rows, args.month))
    else:
        print_reconciliation(rows, args.month, only_problems=args.problems_only)
    return 1 if args.strict and any(not r.balanced for r in rows) else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from jukinet_ops.synth import synth

    out = synth(args.deployment, args.out)
    print(f"cloud assembly written to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jukinet_ops.demo import run_demo

    return run_demo(notices=args.notices, seed=args.seed, deployment_name=args.deployment, cdk_out=args.cdk_out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jukinet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo month on the embedded AWS",
                          description="Synthesize the CDK app, deploy the cloud assembly into an embedded moto "
                                      "server on 127.0.0.1, run the deployed functions in-process and push a "
                                      "month of update notices (Nagano, January 2003 volume) through all three "
                                      "tiers; print the reconciliation table and the alarm states.")
    demo.add_argument("--notices", type=int, default=18_692, help="valid notices in the month (default: 18,692)")
    demo.add_argument("--seed", type=int, default=2003, help="seed of the synthetic population")
    demo.add_argument("--cdk-out", default=None, help="use this synthesized assembly instead of synthesizing")
    _add_deployment(demo)
    demo.set_defaults(func=cmd_demo)

    rec = sub.add_parser("reconcile", help="reconcile notice counts across the tiers",
                         description="Per municipality and month (Japan time): notices sent and rejected by the "
                                     "CS, stored at the prefecture and nationally, dead-lettered, and sequence "
                                     "gaps. Rows that do not balance are shown in red with the reason. Uses the "
                                     "standard AWS credential chain; --endpoint-url points it at an embedded AWS.")
    rec.add_argument("--month", type=_month, default=_this_month(), help="YYYY-MM, Japan time (default: this month)")
    rec.add_argument("--prefecture", default=None, help="only this prefecture (6-digit code, e.g. 200000)")
    rec.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. the embedded AWS)")
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec.add_argument("--problems-only", action="store_true", help="show only rows that do not balance")
    rec.add_argument("--strict", action="store_true", help="exit 1 if any row does not balance")
    _add_deployment(rec)
    rec.set_defaults(func=cmd_reconcile)

    syn = sub.add_parser("synth", help="synthesize the CDK app into a cloud assembly (offline)")
    syn.add_argument("--out", default="cdk.out", help="output directory (default: cdk.out)")
    _add_deployment(syn)
    syn.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
