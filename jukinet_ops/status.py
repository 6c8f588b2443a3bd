"""``jukinet status``: what is running — tiers, queues with their depths, dead letters, alarms in
ALARM, isolation holds — read through the AWS APIs of a deployed environment (the one
``jukinet up`` runs with ``--local``, or AWS with the usual credentials). For a local environment
it adds what ``jukinet up`` last reported (``up-status.json``): invocations, errors, held work
and the schedules' next runs.

Everything is read; nothing is changed (queue depths come from ``GetQueueAttributes``, never
from receiving a message).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jukinet.adapters import aws

_DEPTH = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
          "ApproximateNumberOfMessagesDelayed")


@dataclass
class TierStatus:
    tier: str
    account: str
    region: str
    stacks: dict[str, str]  # stack name -> status ("missing" when not deployed)


@dataclass
class QueueStatus:
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter: bool

    @property
    def depth(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass
class Status:
    deployment: str
    tiers: list[TierStatus]
    queues: list[QueueStatus]
    alarms_in_alarm: list[dict[str, str]]
    isolations: list[dict[str, Any]]
    local: dict[str, Any] | None = None  # jukinet up's last report
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for q, d in zip(self.queues, out["queues"], strict=True):
            d["depth"] = q.depth
        return out


def _tiers(deployment: Any) -> list[tuple[str, Any, list[str], str]]:
    """(tier, environment, exact stack names, stack-name prefix of its numbered stacks)."""
    from infra.naming import NATIONAL, Names, municipality_tier, prefecture_tier

    names = Names.of(deployment)
    tiers = [(NATIONAL, deployment.national.env, [names.national_stack()], "")]
    for p in deployment.prefectures:
        tiers.append((prefecture_tier(p.code), p.env, [names.prefecture_stack(p.code)], ""))
        base = names.municipality_base_stack(p.code)
        tiers.append((municipality_tier(p.code), p.municipality_tier.env, [base], base.removesuffix("base")))
    return tiers


def collect_status(deployment: Any, *, state_dir: Path | None = None) -> Status:
    from infra.naming import Names

    from .emergency import Emergency

    names = Names.of(deployment)
    cfn = aws.client("cloudformation")
    deployed: dict[str, str] = {}
    for page in cfn.get_paginator("list_stacks").paginate():
        for s in page.get("StackSummaries", []):
            if s["StackName"].startswith(deployment.prefix) and s["StackStatus"] != "DELETE_COMPLETE":
                deployed[s["StackName"]] = s["StackStatus"]
    tiers = []
    for tier, env, exact, numbered in _tiers(deployment):
        stacks = {name: deployed.get(name, "missing") for name in exact}
        if numbered:
            stacks.update({n: st for n, st in sorted(deployed.items()) if n.startswith(numbered) and n not in stacks})
        tiers.append(TierStatus(tier, env.account, env.region, stacks))

    sqs = aws.client("sqs")
    urls: list[str] = []
    for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=deployment.prefix):
        urls += page.get("QueueUrls", [])
    dead_letter_suffix = names.dead_letter_queue("")
    failure_queues = {names.cs_failure_queue(p.code) for p in deployment.prefectures}
    queues = []
    for url in sorted(urls):
        name = url.rsplit("/", 1)[-1]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH))["Attributes"]
        visible, in_flight, delayed = (int(attributes.get(a, 0)) for a in _DEPTH)
        queues.append(QueueStatus(name, visible, in_flight, delayed,
                                  dead_letter=name.endswith(dead_letter_suffix) or name in failure_queues))

    alarms = []
    cloudwatch = aws.client("cloudwatch")
    # The state is checked here too: moto ignores StateValue when AlarmNamePrefix is given.
    for page in cloudwatch.get_paginator("describe_alarms").paginate(StateValue="ALARM",
                                                                     AlarmNamePrefix=deployment.prefix):
        for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            if a.get("StateValue") != "ALARM":
                continue
            alarms.append({"name": a["AlarmName"], "reason": a.get("StateReason", ""),
                           "since": str(a.get("StateUpdatedTimestamp", ""))})

    problems: list[str] = []
    isolations: list[dict[str, Any]] = []
    try:
        for line in Emergency(deployment, invoke_event=None).status():
            r = line.record
            isolations.append({"kind": r.kind, "target": r.target, "name": r.name, "status": r.status,
                               "since": r.isolated_at, "by": r.isolated_by, "reason": r.reason,
                               "pending": list(r.pending), "drift": list(line.drift)})
    except Exception as exc:  # noqa: BLE001 - the rest of the status is still worth showing
        problems.append(f"isolation records could not be read: {exc}")

    local = None
    if state_dir is not None:
        from .up import STATUS_FILE

        path = state_dir / STATUS_FILE
        if path.is_file():
            local = json.loads(path.read_text(encoding="utf-8"))
    return Status(deployment.name, tiers, queues, alarms, isolations, local, problems)


def print_status(status: Status, console: Console | None = None) -> None:
    console = console or Console()
    tiers = Table(title=f"{status.deployment}: tiers")
    for col in ("tier", "account", "region", "stacks"):
        tiers.add_column(col)
    for t in status.tiers:
        stacks = ", ".join(f"{n} [{'green' if s.endswith('_COMPLETE') else 'red'}]{s}[/]" for n, s in t.stacks.items())
        tiers.add_row(t.tier, t.account, t.region, stacks)
    console.print(tiers)

    queues = Table(title="queues")
    for col in ("queue", "depth", "visible", "in flight", "delayed"):
        queues.add_column(col, justify="left" if col == "queue" else "right")
    for q in status.queues:
        if not q.dead_letter:
            queues.add_row(q.name, str(q.depth), str(q.visible), str(q.in_flight), str(q.delayed))
    console.print(queues)
    dead = Table(title="dead letters")
    dead.add_column("queue")
    dead.add_column("messages", justify="right")
    for q in status.queues:
        if q.dead_letter:
            dead.add_row(q.name, f"[red]{q.depth}[/]" if q.depth else "0")
    console.print(dead)

    if status.alarms_in_alarm:
        alarms = Table(title="alarms in ALARM")
        for col in ("alarm", "since", "reason"):
            alarms.add_column(col)
        for a in status.alarms_in_alarm:
            alarms.add_row(f"[red]{a['name']}[/]", a["since"], a["reason"][:100])
        console.print(alarms)
    else:
        console.print("alarms in ALARM: none")

    if status.isolations:
        holds = Table(title="isolation holds (緊急時対応)")
        for col in ("target", "status", "since", "by", "reason", "drift"):
            holds.add_column(col)
        for i in status.isolations:
            holds.add_row(f"{i['kind']} {i['target']} ({i['name']})", i["status"] + (
                f", pending: {', '.join(i['pending'])}" if i["pending"] else ""), str(i["since"]), str(i["by"]),
                i["reason"], "; ".join(i["drift"]) or "-")
        console.print(holds)
    else:
        console.print("isolation holds: none")

    if status.local is not None:
        local = status.local
        invocations = local.get("invocations", {})
        errors = local.get("errors", {})
        console.print(f"jukinet up (pid {local.get('pid')}): up since {local.get('started')}, last report "
                      f"{local.get('updated')}; {sum(invocations.values()):,} invocations of "
                      f"{len(invocations)} functions, {sum(errors.values())} failed; alarms last evaluated "
                      f"{local.get('alarms_evaluated') or 'not yet'}")
        for held in local.get("held", []):
            console.print(f"  held: {held}")
        for s in local.get("schedules", []):
            console.print(f"  schedule {s['rule']} ({s['expression']}) → {s['function']}: next {s['next']}")
        for e in local.get("loop_errors", []):
            console.print(f"  [red]loop error:[/] {e}")
    for p in status.problems:
        console.print(f"[yellow]{p}[/]")


def status_json(status: Status) -> str:
    return json.dumps(status.to_dict(), ensure_ascii=False, indent=2, default=str)
