"""Turn a deployment configuration into stacks (the body of ``app.py``; tests call it too).

Dependencies between stacks: the CS stacks use their tier's base stack (same account and
region by construction). Across tiers nothing is referenced except the sending tier's SQS
endpoint id, needed by the receiving queue's policy, and a prefecture tier's execute-api
endpoint id, needed by the provision API's resource policy: imported from the other stack
when both share account and region, taken from configuration otherwise (``config`` refuses
a deployment where it is missing). Everything else crossing tiers comes from ``naming``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks

from .components.responsibility import attach_people
from .config import Deployment
from .naming import NATIONAL, Names, municipality_tier, prefecture_tier
from .stacks.municipality import MunicipalityBaseStack, MunicipalityStack
from .stacks.national import NationalStack
from .stacks.prefecture import PrefectureStack

TrailHost = tuple[str, str]  # ("national", ""), ("pref", code) or ("muni", code)


def trail_hosts(deployment: Deployment) -> dict[str, TrailHost]:
    """One trail per account, in the highest tier that lives there (docs/decisions/0005)."""
    hosts: dict[str, TrailHost] = {deployment.national.env.account: ("national", "")}
    for p in deployment.prefectures:
        hosts.setdefault(p.env.account, ("pref", p.code))
    for p in deployment.prefectures:
        hosts.setdefault(p.municipality_tier.env.account, ("muni", p.code))
    return hosts


@dataclass
class Built:
    national: NationalStack
    prefectures: dict[str, PrefectureStack] = field(default_factory=dict)
    municipality_bases: dict[str, MunicipalityBaseStack] = field(default_factory=dict)
    municipality_stacks: dict[str, list[MunicipalityStack]] = field(default_factory=dict)

    @property
    def stacks(self) -> list[cdk.Stack]:
        found: list[cdk.Stack] = [self.national, *self.prefectures.values(), *self.municipality_bases.values()]
        for chunks in self.municipality_stacks.values():
            found += chunks
        return found


def build(app: cdk.App, deployment: Deployment, *, today: dt.date, checks: bool = True) -> Built:
    """The deployment's stacks as of ``today`` (JST): the day decides which contractors' roles
    are still synthesized, and a contract may run at most a year past it."""
    deployment.people.validate_on(today)
    names = Names.of(deployment)
    hosts = trail_hosts(deployment)
    bases: dict[str, MunicipalityBaseStack] = {}
    chunks: dict[str, list[MunicipalityStack]] = {}
    prefectures: dict[str, PrefectureStack] = {}
    # API Gateway's logging role is one setting per account and region: the national stack's
    # provision API sets it where it lives, else the first municipality tier's counter API.
    logging_set = {(deployment.national.env.account, deployment.national.env.region)}
    for p in deployment.prefectures:
        muni = p.municipality_tier
        place = (muni.env.account, muni.env.region)
        base = MunicipalityBaseStack(app, deployment=deployment, prefecture=p,
                                     host_trail=hosts[muni.env.account] == ("muni", p.code),
                                     api_logging_role=place not in logging_set)
        logging_set.add(place)
        bases[p.code] = base
        chunks[p.code] = [MunicipalityStack(app, base=base, index=i, municipalities=group)
                          for i, group in enumerate(muni.groups(), start=1)]
        same_place = muni.env == p.env
        endpoint = (cdk.Fn.import_value(names.sqs_endpoint_export(municipality_tier(p.code))) if same_place
                    else muni.sqs_endpoint_id)
        assert endpoint is not None  # config.Prefecture refuses this case
        pref = PrefectureStack(app, deployment=deployment, prefecture=p, sender_endpoint_id=endpoint,
                               host_trail=hosts[p.env.account] == ("pref", p.code))
        if same_place:
            pref.add_stack_dependency(base, "imports the municipality tier's SQS endpoint id")
        prefectures[p.code] = pref

    national_env = deployment.national.env
    endpoints = []
    for p in deployment.prefectures:
        if p.env == national_env:
            endpoints.append(cdk.Fn.import_value(names.sqs_endpoint_export(prefecture_tier(p.code))))
        else:
            assert p.sqs_endpoint_id is not None  # config.Deployment refuses this case
            endpoints.append(p.sqs_endpoint_id)
    api_endpoints: dict[str, str] = {}
    for p in deployment.prefectures:
        if not deployment.own_use_recipients(p.code):
            continue
        if p.env == national_env:
            api_endpoints[p.code] = cdk.Fn.import_value(names.execute_api_endpoint_export(prefecture_tier(p.code)))
        else:
            assert p.api_endpoint_id is not None  # config.Deployment refuses this case
            api_endpoints[p.code] = p.api_endpoint_id
    national = NationalStack(app, deployment=deployment, host_trail=hosts[national_env.account] == (NATIONAL, ""),
                             sender_endpoint_ids=endpoints, prefecture_api_endpoints=api_endpoints)
    for p in deployment.prefectures:
        if p.env == national_env:
            national.add_stack_dependency(prefectures[p.code], "imports the prefecture tier's SQS (and execute-api) "
                                                               "endpoint id")

    # People's roles per tier and the break-glass filters on each account's trail (docs/security.md).
    attach_people(deployment, [national, *prefectures.values(), *bases.values()], today=today)

    cdk.Tags.of(app).add("system", names.prefix)
    if checks:
        cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
        cdk.Aspects.of(app).add(NIST80053R5Checks(verbose=True))
    return Built(national=national, prefectures=prefectures, municipality_bases=bases, municipality_stacks=chunks)
