"""The responsibility structure as IAM (docs/security.md): people's roles per tier, guardrails,
break-glass with its alarm, contractors whose access ends by itself, and the configuration's rules.

Assertions are on the synthesized templates by property (role name and path, policy content),
and the policies are evaluated with ``embedded_aws.iam_policy``: would this person, at this
time, with this context, be allowed?
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    DATA_DIR,
    MAX_CONTRACT_DAYS,
    RESPONSIBILITY_ROLES,
    Assignment,
    ConfigError,
    Contract,
    Deployment,
    National,
    Network,
    People,
    Person,
    load_municipalities,
    load_people,
    nagano_demo,
)
from infra.naming import Names
from jukinet.clock import JST
from embedded_aws.iam_policy import ALLOW, DENY, IMPLICIT_DENY, as_list, evaluate

from ..dates import SYNTH_DAY
from .conftest import Synth, cdk_context, offline

pytestmark = pytest.mark.slow

BREAK_GLASS = "break-glass"
AZS = ("ap-northeast-1a", "ap-northeast-1c")
ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/test-people/"


# --- helpers over a template ------------------------------------------------------------------


def people_roles(template: dict[str, Any], tier: str, prefix: str = "jukinet") -> dict[str, dict[str, Any]]:
    """Role name → properties of the roles under the tier's people path."""
    path = f"/{prefix}/{tier}-people/"
    return {r["Properties"]["RoleName"]: r["Properties"] for r in template["Resources"].values()
            if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("Path") == path}


def policies_of(template: dict[str, Any], role: dict[str, Any]) -> list[dict[str, Any]]:
    """The managed policy documents a role attaches (by Ref within the template)."""
    docs = []
    for ref in role.get("ManagedPolicyArns", []):
        lid = ref["Ref"]
        docs.append(template["Resources"][lid]["Properties"]["PolicyDocument"])
    return docs


def key_arn(template: dict[str, Any], alias: str) -> Any:
    """The key's ARN as the template writes it (``Fn::GetAtt``), found through its alias."""
    for r in template["Resources"].values():
        if r["Type"] == "AWS::KMS::Alias" and r["Properties"]["AliasName"] == alias:
            return {"Fn::GetAtt": [r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0], "Arn"]}
    raise AssertionError(f"no key with alias {alias}")


def key_policy(template: dict[str, Any], alias: str) -> dict[str, Any]:
    lid = key_arn(template, alias)["Fn::GetAtt"][0]
    return template["Resources"][lid]["Properties"]["KeyPolicy"]


def jst(day: dt.date, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=JST)


def mfa(now: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {"aws:MultiFactorAuthPresent": True, "aws:MultiFactorAuthAge": "60",
            "aws:CurrentTime": now or dt.datetime.now(dt.UTC), **extra}


def tier_stacks(synth: Synth) -> dict[str, str]:
    """Tier → the stack that holds its people (national, prefecture, municipality base)."""
    return {s.tier: s.stack_name for s in synth.built.stacks if hasattr(s, "tier")}


# --- a small deployment with contracts of our own choosing --------------------------------------


TODAY = SYNTH_DAY  # the day the small deployment is synthesized as of
EXPIRES = TODAY + dt.timedelta(days=100)


def small_people() -> People:
    persons = tuple(Person(pid, f"{pid} (test)", f"{USER}{pid}", organisation="test") for pid in (
        "chief", "deputy", "officer", "netadmin", "operator", "auditor", "vendor1", "vendor2", "oldvendor"))
    saml = Person("samluser", "SAML user (test)", f"arn:aws:iam::{ACCOUNT}:saml-provider/test-idp",
                  saml_subject="saml.user@example.jp")
    since = TODAY - dt.timedelta(days=200)
    assignments = tuple(
        Assignment(tier, role, person, since)
        for tier in ("national", "pref-200000", "muni-200000")
        for role, person in (("chief-security-officer", "chief"), ("deputy-chief-security-officer", "deputy"),
                             ("security-officer", "officer"), ("network-administrator", "netadmin"),
                             ("operator", "operator"), ("operator", "samluser"), ("auditor", "auditor")))
    contracts = (
        Contract("ops-support", "Vendor K.K. (test)", "pref-200000", ("vendor1", "vendor2"), since, EXPIRES),
        Contract("old-vendor", "Old Vendor (test)", "national", ("oldvendor",), TODAY - dt.timedelta(days=400),
                 TODAY - dt.timedelta(days=10)),
    )
    return People(persons=(*persons, saml), assignments=assignments, contracts=contracts)


def small_deployment(demo: Deployment | None = None) -> Deployment:
    demo = demo or nagano_demo()
    municipalities = load_municipalities(DATA_DIR / "nagano_municipalities.csv")[:3]
    pref = demo.prefectures[0]
    pref = dataclasses.replace(pref, municipality_tier=dataclasses.replace(pref.municipality_tier,
                                                                          municipalities=municipalities))
    return Deployment(name="people-test", national=National(env=demo.national.env, network=Network("10.0.0.0/22", AZS)),
                      prefectures=(pref,), agencies=demo.agencies, people=small_people())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    import aws_cdk as cdk

    from infra.bundling import build_bundle
    from infra.composition import build

    build_bundle()
    outdir: Path = tmp_path_factory.mktemp("cdk-people")
    deployment = small_deployment()
    with offline():
        app = cdk.App(outdir=str(outdir), context=cdk_context("nagano-demo"), analytics_reporting=False)
        built = build(app, deployment, today=TODAY, checks=False)
        assembly = app.synth()
    templates = {s.stack_name: s.template for s in assembly.stacks}
    manifest = json.loads((outdir / "manifest.json").read_text())
    return Synth("people-test", deployment, built, outdir, templates, manifest)


# --- every people role ----------------------------------------------------------------------------


def test_every_tier_stack_has_each_responsibility_role_and_break_glass(nagano: Synth) -> None:
    people = nagano.deployment.people
    for tier, stack in tier_stacks(nagano).items():
        roles = people_roles(nagano.templates[stack], tier)
        expected = {f"jukinet-{tier}-{kind}" for kind in RESPONSIBILITY_ROLES if people.holders(tier, kind)}
        expected.add(f"jukinet-{tier}-{BREAK_GLASS}")
        expected |= {f"jukinet-{tier}-{c.role_kind}" for c in people.contracts_of(tier) if not c.is_expired(TODAY)}
        assert set(roles) == expected, tier
        assert len(expected) >= len(RESPONSIBILITY_ROLES) + 1


def test_people_roles_need_mfa_last_an_hour_and_trust_exactly_the_configured_people(every: Synth) -> None:
    people = every.deployment.people
    for tier, stack in tier_stacks(every).items():
        for name, role in people_roles(every.templates[stack], tier).items():
            assert role["MaxSessionDuration"] == 3600, name
            kind = name.removeprefix(f"jukinet-{tier}-")
            trusted: set[str] = set()
            for st in role["AssumeRolePolicyDocument"]["Statement"]:
                assert st["Effect"] == "Allow"
                if "AWS" in st["Principal"]:
                    assert st["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}, name
                    trusted |= set(st["Principal"]["AWS"] if isinstance(st["Principal"]["AWS"], list)
                                   else [st["Principal"]["AWS"]])
                else:  # SAML: one NameID per person, and never for break-glass
                    assert kind != BREAK_GLASS
                    assert st["Action"][0] == "sts:AssumeRoleWithSAML"
                    assert st["Condition"]["StringEquals"]["SAML:aud"] == "https://signin.aws.amazon.com/saml"
                    trusted |= {f"{st['Principal']['Federated']}#{s}"
                                for s in st["Condition"]["StringEquals"]["saml:sub"]}
            if kind == BREAK_GLASS:
                holders = people.holders(tier, "security-officer")
            elif kind.startswith("contractor-"):
                contract = next(c for c in people.contracts_of(tier) if c.role_kind == kind)
                holders = tuple(people.person(p) for p in contract.people)
            else:
                holders = people.holders(tier, kind)
            assert trusted == {f"{p.principal}#{p.saml_subject}" if p.is_saml else p.principal for p in holders}, name


def test_only_break_glass_may_decrypt_with_the_envelope_key_or_read_residents(nagano: Synth) -> None:
    """Evaluated on each role's attached policies: the guardrail's Denies hold for every role
    but break-glass, whatever else its policy allows; ledgers stay readable for reconciliation."""
    for tier in ("national", "pref-200000"):
        template = nagano.templates[tier_stacks(nagano)[tier]]
        envelope = key_arn(template, f"alias/jukinet/{tier}/envelope")
        context = {"tier": "national"} if tier == "national" else {"tier": "prefecture", "prefecture": "200000"}
        kms_context = {f"kms:EncryptionContext:{k}": v for k, v in context.items()}
        session = {"aws:SourceIdentity": "someone", "aws:PrincipalTag/reason": "incident 42"}
        table = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/jukinet-{tier}-identity"
        resident = {"dynamodb:LeadingKeys": ["R#12345678901"]}
        decisions = {}
        for name, role in people_roles(template, tier).items():
            docs = policies_of(template, role)
            decrypt = evaluate(docs, action="kms:Decrypt", resource=envelope, context={**kms_context, **session})
            read = evaluate(docs, action="dynamodb:GetItem", resource=table, context={**resident, **session})
            decisions[name] = (decrypt, read)
            if name.endswith(BREAK_GLASS):
                assert (decrypt, read) == (ALLOW, ALLOW), name
                assert evaluate(docs, action="kms:Decrypt", resource=envelope,
                                context={**kms_context, **session, "kms:EncryptionContext:purpose": "blind-index"}
                                ) == DENY, "never the blind-index key"
                assert evaluate(docs, action="kms:Decrypt", resource=envelope, context=kms_context) != ALLOW, \
                    "only in a session with a source identity and a reason"
                assert evaluate(docs, action="dynamodb:Scan", resource=table, context=session) != ALLOW
            else:
                assert (decrypt, read) == (DENY, DENY), name
                for action in ("dynamodb:Scan", "dynamodb:Query", "dynamodb:PartiQLSelect",
                               "dynamodb:ExportTableToPointInTime"):
                    assert evaluate(docs, action=action, resource=table) == DENY, (name, action)
                assert evaluate(docs, action="dynamodb:Query", resource=f"{table}/index/bidx") == DENY, name
                ledger = evaluate(docs, action="dynamodb:GetItem", resource=table,
                                  context={"dynamodb:LeadingKeys": ["LEDGER#202011"]})
                assert ledger != DENY, name
        assert sum(d == (ALLOW, ALLOW) for d in decisions.values()) == 1


def test_the_envelope_key_policy_admits_break_glass_and_no_other_person(nagano: Synth) -> None:
    for tier in ("national", "pref-200000"):
        policy = key_policy(nagano.templates[tier_stacks(nagano)[tier]], f"alias/jukinet/{tier}/envelope")
        people_path = f"/jukinet/{tier}-people/"
        admitted = [arn for st in policy["Statement"] if st["Effect"] == "Allow"
                    for arn in as_list(st.get("Condition", {}).get("ArnLike", {}).get("aws:PrincipalArn", []))
                    if people_path in arn]
        assert admitted == [f"arn:aws:iam::{ACCOUNT}:role{people_path}jukinet-{tier}-{BREAK_GLASS}"]
        [statement] = [st for st in policy["Statement"] if st.get("Sid") == "BreakGlassOpensFacts"]
        assert statement["Action"] == "kms:Decrypt"
        assert "kms:EncryptionContext:tier" in statement["Condition"]["StringEquals"]


def test_operators_contractors_and_auditors_carry_explicit_denies_of_facts(nagano: Synth) -> None:
    for tier in ("national", "pref-200000"):
        template = nagano.templates[tier_stacks(nagano)[tier]]
        envelope = key_arn(template, f"alias/jukinet/{tier}/envelope")
        table = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/jukinet-{tier}-identity"
        for name, role in people_roles(template, tier).items():
            if not name.endswith(("-operator", "-auditor")) and "-contractor-" not in name:
                continue
            denies = [st for doc in policies_of(template, role) for st in doc["Statement"] if st["Effect"] == "Deny"]
            assert any("kms:Decrypt" in st["Action"] and envelope in as_list(st["Resource"]) for st in denies), name
            assert any("dynamodb:GetItem" in st["Action"] and table in as_list(st["Resource"]) for st in denies), name
            assert any("dynamodb:Scan" in st["Action"] and table in as_list(st["Resource"]) for st in denies), name


def test_municipality_tier_people_cannot_read_drop_zone_files_but_break_glass_can(nagano: Synth) -> None:
    template = nagano.templates[tier_stacks(nagano)["muni-200000"]]
    obj = f"arn:aws:s3:::jukinet-dropzone-{ACCOUNT}-ap-northeast-1-202011/incoming/export.csv"
    session = {"aws:SourceIdentity": "sasaki", "aws:PrincipalTag/reason": "incident 42"}
    for name, role in people_roles(template, "muni-200000").items():
        decision = evaluate(policies_of(template, role), action="s3:GetObject", resource=obj, context=session)
        assert decision == (ALLOW if name.endswith(BREAK_GLASS) else DENY), name


def test_break_glass_trust_needs_a_security_officer_fresh_mfa_own_source_identity_and_a_reason(nagano: Synth) -> None:
    people = nagano.deployment.people
    tier = "pref-200000"
    [officer] = people.holders(tier, "security-officer")
    [operator] = people.holders(tier, "operator")
    role = people_roles(nagano.templates[tier_stacks(nagano)[tier]], tier)[f"jukinet-{tier}-{BREAK_GLASS}"]
    trust = role["AssumeRolePolicyDocument"]
    good = mfa(**{"sts:SourceIdentity": officer.person_id, "aws:RequestTag/reason": "inquiry 2026-17",
                  "aws:TagKeys": ["reason"]})

    def assume(principal: str, context: dict[str, Any]) -> str:
        return evaluate(trust, action="sts:AssumeRole", principal=principal, context=context)

    assert assume(officer.principal, good) == ALLOW
    for action in ("sts:SetSourceIdentity", "sts:TagSession"):
        assert evaluate(trust, action=action, principal=officer.principal, context=good) == ALLOW
    assert assume(operator.principal, {**good, "sts:SourceIdentity": operator.person_id}) == IMPLICIT_DENY
    assert assume(officer.principal, {k: v for k, v in good.items() if k != "aws:RequestTag/reason"}) == IMPLICIT_DENY
    assert assume(officer.principal, {**good, "sts:SourceIdentity": "someone-else"}) == IMPLICIT_DENY
    assert assume(officer.principal, {**good, "aws:MultiFactorAuthPresent": False}) == IMPLICIT_DENY
    assert assume(officer.principal, {**good, "aws:MultiFactorAuthAge": "3600"}) == IMPLICIT_DENY
    assert assume(officer.principal, {**good, "aws:TagKeys": ["reason", "costcenter"]}) == IMPLICIT_DENY


def test_every_assume_role_of_break_glass_raises_its_tiers_alarm(every: Synth) -> None:
    """A metric filter on the account trail's log group per tier with a break-glass role, and an
    alarm in that tier's own stack on its own topic."""
    for tier, stack in tier_stacks(every).items():
        template = every.templates[stack]
        if f"jukinet-{tier}-{BREAK_GLASS}" not in people_roles(template, tier):
            continue
        [alarm] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
                   and r["Properties"]["AlarmName"] == f"jukinet-{tier}-break-glass-used"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("Jukinet/Security", f"BreakGlassUsed-{tier}")
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Statistic"] == "Sum" and alarm["EvaluationPeriods"] == 1
        topics = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"}
        assert [a["Ref"] for a in alarm["AlarmActions"]] == [a["Ref"] for a in alarm["OKActions"]]
        assert {a["Ref"] for a in alarm["AlarmActions"]} <= topics

        account = every.deployment.tier_env(tier).account
        hosts = [s for s in every.built.stacks if getattr(s, "trail", None) is not None
                 and s.tier_env.account == account]
        [host] = hosts
        host_template = every.templates[host.stack_name]
        trail_log_groups = {lid for lid, r in host_template["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"
                            and "AccountTrail" in lid}
        filters = [r["Properties"] for r in host_template["Resources"].values() if r["Type"] == "AWS::Logs::MetricFilter"
                   and r["Properties"]["MetricTransformations"][0]["MetricName"] == f"BreakGlassUsed-{tier}"]
        [f] = filters
        assert f["LogGroupName"]["Ref"] in trail_log_groups
        assert f["MetricTransformations"][0]["MetricNamespace"] == "Jukinet/Security"
        assert '$.eventName = "AssumeRole"' in f["FilterPattern"]
        assert f"jukinet-{tier}-{BREAK_GLASS}" in f["FilterPattern"]
        assert f":{account}:" in f["FilterPattern"]


def test_the_break_glass_filter_matches_cloudtrails_assume_role_event_with_or_without_the_path() -> None:
    monitoring = pytest.importorskip("embedded_aws.monitoring")
    from infra.components.responsibility import break_glass_filter_pattern

    pattern = monitoring.parse_filter_pattern(break_glass_filter_pattern(ACCOUNT, "jukinet-national-break-glass"))

    def event(role_arn: str, name: str = "AssumeRole") -> str:
        return json.dumps({"eventSource": "sts.amazonaws.com", "eventName": name, "recipientAccountId": ACCOUNT,
                           "requestParameters": {"roleArn": role_arn, "roleSessionName": "s",
                                                 "sourceIdentity": "ito"}})

    with_path = f"arn:aws:iam::{ACCOUNT}:role/jukinet/national-people/jukinet-national-break-glass"
    assert pattern.matches(event(with_path))
    assert pattern.matches(event(f"arn:aws:iam::{ACCOUNT}:role/jukinet-national-break-glass"))
    assert not pattern.matches(event(f"arn:aws:iam::{ACCOUNT}:role/jukinet/national-people/jukinet-national-operator"))
    assert not pattern.matches(event(with_path, name="GetRole"))


def test_network_administrators_manage_their_tiers_network_only_and_never_use_a_key(nagano: Synth) -> None:
    tier = "pref-200000"
    template = nagano.templates[tier_stacks(nagano)[tier]]
    role = people_roles(template, tier)[f"jukinet-{tier}-network-administrator"]
    docs = policies_of(template, role)
    sg = f"arn:aws:ec2:ap-northeast-1:{ACCOUNT}:security-group/sg-0123456789abcdef0"
    assert evaluate(docs, action="ec2:AuthorizeSecurityGroupIngress", resource=sg,
                    context={"aws:ResourceTag/jukinet:tier": tier}) == ALLOW
    assert evaluate(docs, action="ec2:AuthorizeSecurityGroupIngress", resource=sg,
                    context={"aws:ResourceTag/jukinet:tier": "national"}) == IMPLICIT_DENY
    for action in ("kms:Decrypt", "kms:Sign", "kms:GenerateDataKey"):
        assert evaluate(docs, action=action, resource=f"arn:aws:kms:ap-northeast-1:{ACCOUNT}:key/any") == DENY


def test_operators_run_the_emergency_stop_of_their_own_tier_only(nagano: Synth) -> None:
    tier = "pref-200000"
    template = nagano.templates[tier_stacks(nagano)[tier]]
    docs = policies_of(template, people_roles(template, tier)[f"jukinet-{tier}-operator"])
    own = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-{tier}-processor"
    other = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-national-processor"
    mapping = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:event-source-mapping:0f1e2d3c"
    assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=own) == ALLOW
    assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=other) == IMPLICIT_DENY
    assert evaluate(docs, action="lambda:UpdateEventSourceMapping", resource=mapping,
                    context={"lambda:FunctionArn": own}) == ALLOW
    assert evaluate(docs, action="lambda:UpdateEventSourceMapping", resource=mapping,
                    context={"lambda:FunctionArn": other}) == IMPLICIT_DENY
    assert evaluate(docs, action="lambda:UpdateFunctionCode", resource=own) == IMPLICIT_DENY
    dlq = f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-{tier}-inbound-dlq"
    assert evaluate(docs, action="sqs:GetQueueAttributes", resource=dlq) == ALLOW
    inbound = next(st["Resource"] for doc in docs for st in doc["Statement"] if st.get("Sid") == "DenyNoticeMessages")
    assert as_list(inbound) == [f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-{tier}-inbound"]
    assert evaluate(docs, action="sqs:ReceiveMessage", resource=as_list(inbound)[0]) == DENY


# --- redrive (jukinet redrive, decision 0022) ---------------------------------------------------


def _sqs(tier: str, name: str) -> str:
    return f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-{tier}-{name}"


def _as(template: dict[str, Any], tier: str, kind: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A people role's policies and the request context its sessions carry."""
    role = people_roles(template, tier)[f"jukinet-{tier}-{kind}"]
    return policies_of(template, role), {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role{role['Path']}"
                                                             f"{role['RoleName']}"}


def test_operators_redrive_their_own_tiers_dead_letters_and_nothing_else(nagano: Synth) -> None:
    """The operator moves dead letters from its tier's DLQ back to its inbound queue, through
    SQS only, and records it; it cannot read the inbound queue, purge, send anywhere else, use
    the transport key outside SQS or for another queue, or redrive another tier."""
    for tier, other in (("pref-200000", "national"), ("national", "pref-200000")):
        template = nagano.templates[tier_stacks(nagano)[tier]]
        docs, me = _as(template, tier, "operator")
        transport = key_arn(template, f"alias/jukinet/{tier}/transport")
        dlq, inbound = _sqs(tier, "inbound-dlq"), _sqs(tier, "inbound")
        via_sqs = {**me, "kms:ViaService": "sqs.ap-northeast-1.amazonaws.com"}
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
            assert evaluate(docs, action=action, resource=dlq, context=me) == ALLOW, (tier, action)
        assert evaluate(docs, action="sqs:SendMessage", resource=inbound, context=me) == ALLOW
        for queue in (dlq, inbound):
            for action in ("kms:Decrypt", "kms:GenerateDataKey"):
                assert evaluate(docs, action=action, resource=transport,
                                context={**via_sqs, "kms:EncryptionContext:aws:sqs:arn": queue}) == ALLOW
        assert evaluate(docs, action="ssm:PutParameter", context=me,
                        resource=f"arn:aws:ssm:ap-northeast-1:{ACCOUNT}:parameter/jukinet/redrive/{tier}/x") == ALLOW
        # The attacks, each with the operator's own session:
        refused = [
            ("sqs:ReceiveMessage", inbound, me),                      # read notices in flight
            ("sqs:PurgeQueue", dlq, me),                              # destroy the dead letters
            ("sqs:PurgeQueue", inbound, me),
            ("sqs:SendMessage", dlq, me),                             # make up dead letters
            ("sqs:SendMessage", _sqs(other, "inbound"), me),          # another tier's door
            ("sqs:ReceiveMessage", _sqs(other, "inbound-dlq"), me),   # another tier's dead letters
            ("sqs:SendMessage", f"arn:aws:sqs:ap-northeast-1:{ACCOUNT}:jukinet-national-provision-batch", me),
            ("kms:Decrypt", transport, {**me, "kms:EncryptionContext:aws:sqs:arn": dlq}),  # outside SQS
            ("kms:Decrypt", transport, {**via_sqs, "kms:EncryptionContext:aws:sqs:arn": _sqs(other, "inbound-dlq")}),
            ("kms:CreateGrant", transport, {**via_sqs, "kms:EncryptionContext:aws:sqs:arn": dlq}),
            ("kms:Decrypt", key_arn(template, f"alias/jukinet/{tier}/envelope"), via_sqs),  # identity facts
            ("ssm:PutParameter", f"arn:aws:ssm:ap-northeast-1:{ACCOUNT}:parameter/jukinet/redrive/{other}/x", me),
            ("ssm:PutParameter", f"arn:aws:ssm:ap-northeast-1:{ACCOUNT}:parameter/jukinet/x", me),
        ]
        for action, resource, context in refused:
            assert evaluate(docs, action=action, resource=resource, context=context) != ALLOW, (tier, action, resource)


def test_no_other_person_may_read_dead_letters_or_use_the_transport_key_even_if_allowed(nagano: Synth) -> None:
    """The guardrail names the operator's role: an auditor, a security officer or a contractor
    holding an Allow from elsewhere in the account is still refused (break-glass excepted)."""
    for tier in ("pref-200000", "national"):
        template = nagano.templates[tier_stacks(nagano)[tier]]
        transport = key_arn(template, f"alias/jukinet/{tier}/transport")
        dlq = _sqs(tier, "inbound-dlq")
        guardrail = next(r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"
                         and r["Properties"].get("ManagedPolicyName") == f"jukinet-{tier}-people-guardrails")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        docs = [guardrail["Properties"]["PolicyDocument"], everything]
        for kind in ("auditor", "security-officer", "chief-security-officer", "network-administrator"):
            arn = {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/jukinet/{tier}-people/jukinet-{tier}-{kind}"}
            via = {**arn, "kms:ViaService": "sqs.ap-northeast-1.amazonaws.com",
                   "kms:EncryptionContext:aws:sqs:arn": dlq}
            assert evaluate(docs, action="sqs:ReceiveMessage", resource=dlq, context=arn) == DENY, (tier, kind)
            assert evaluate(docs, action="kms:Decrypt", resource=transport, context=via) == DENY, (tier, kind)


def test_no_function_role_may_redrive(nagano: Synth) -> None:
    """The processor writes to its DLQ and consumes its inbound queue, the CSs send: none of
    them may read the dead letters back (a compromised function cannot replay or drop them)."""
    checked = 0
    for stack, template in nagano.templates.items():
        resources = template["Resources"]
        dead_letter_queues = [_sqs(t, "inbound-dlq") for t in ("pref-200000", "national")] + [
            {"Fn::GetAtt": [lid, "Arn"]} for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"
            and str(r["Properties"].get("QueueName", "")).endswith("-inbound-dlq")]
        for lid, r in resources.items():
            if r["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") or "-people/" in str(
                    r["Properties"].get("Path", "")):
                continue
            document = r["Properties"]["PolicyDocument"]
            writes_dead_letters = any(evaluate(document, action="sqs:SendMessage", resource=q) == ALLOW
                                      for q in dead_letter_queues)
            checked += writes_dead_letters
            for queue in dead_letter_queues:
                for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
                    assert evaluate(document, action=action, resource=queue) != ALLOW, (stack, lid, action, queue)
    assert checked >= 2, "the processors' policies (which write dead letters) were among those checked"


def test_the_transport_key_admits_the_operator_through_sqs_for_its_two_queues_only(nagano: Synth) -> None:
    for tier in ("pref-200000", "national"):
        template = nagano.templates[tier_stacks(nagano)[tier]]
        policy = key_policy(template, f"alias/jukinet/{tier}/transport")
        [st] = [s for s in policy["Statement"] if s.get("Sid") == "OperatorRedrives"]
        assert sorted(as_list(st["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert as_list(st["Condition"]["ArnLike"]["aws:PrincipalArn"]) == [
            f"arn:aws:iam::{ACCOUNT}:role/jukinet/{tier}-people/jukinet-{tier}-operator"]
        assert st["Condition"]["StringEquals"]["kms:ViaService"] == ["sqs.ap-northeast-1.amazonaws.com"]
        assert sorted(st["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sqs:arn"]) == [
            _sqs(tier, "inbound"), _sqs(tier, "inbound-dlq")]


def test_the_emergency_plan_runs_with_the_operator_roles_of_the_tiers_it_touches(nagano: Synth) -> None:
    """What ``jukinet isolate``/``restore`` call (jukinet_ops/emergency.py), allowed to the operator
    of the tier the target lives in, and to no other tier's operator."""
    arn = "arn:aws:{}:ap-northeast-1:" + ACCOUNT + ":{}"
    ssm = arn.format("ssm", "parameter/jukinet/isolation/{}")
    calls = {
        "muni-200000": [
            ("ssm:PutParameter", ssm.format("municipality/202011")),
            ("lambda:PutFunctionConcurrency", arn.format("lambda", "function:jukinet-cs-202011")),
            ("lambda:InvokeFunction", arn.format("lambda", "function:jukinet-cs-202011")),
            ("s3:PutBucketNotification", f"arn:aws:s3:::jukinet-dropzone-{ACCOUNT}-ap-northeast-1-202011"),
            ("s3:ListBucket", f"arn:aws:s3:::jukinet-dropzone-{ACCOUNT}-ap-northeast-1-202011"),
            ("sqs:TagQueue", arn.format("sqs", "jukinet-cs-202011-inbox")),
            ("sqs:UntagQueue", arn.format("sqs", "jukinet-cs-202011-inbox")),
        ],
        "pref-200000": [
            ("ssm:PutParameter", ssm.format("prefecture/200000")),
            ("sqs:SetQueueAttributes", arn.format("sqs", "jukinet-pref-200000-inbound")),
            ("sqs:TagQueue", arn.format("sqs", "jukinet-pref-200000-inbound")),
        ],
        "national": [
            ("ssm:PutParameter", ssm.format("agency/nenkin")),
            ("apigateway:GET", "arn:aws:apigateway:ap-northeast-1::/apikeys"),
            ("apigateway:PATCH", "arn:aws:apigateway:ap-northeast-1::/apikeys/a1b2c3"),
        ],
    }
    operators = {tier: policies_of(nagano.templates[stack], people_roles(nagano.templates[stack], tier)
                                   [f"jukinet-{tier}-operator"]) for tier, stack in tier_stacks(nagano).items()}
    for tier, wanted in calls.items():
        for action, resource in wanted:
            for other, docs in operators.items():
                expected = ALLOW if other == tier else IMPLICIT_DENY
                assert evaluate(docs, action=action, resource=resource) == expected, (other, action, resource)
    assert evaluate(operators["national"], action="ssm:GetParametersByPath",
                    resource=arn.format("ssm", "parameter/jukinet/isolation")) == ALLOW


def test_auditors_read_the_provision_log_for_disclosure_audits_but_no_identity_facts(nagano: Synth) -> None:
    template = nagano.templates[tier_stacks(nagano)["national"]]
    docs = policies_of(template, people_roles(template, "national")["jukinet-national-auditor"])
    log = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/jukinet-national-provision-log"
    identity = f"arn:aws:dynamodb:ap-northeast-1:{ACCOUNT}:table/jukinet-national-identity"
    assert evaluate(docs, action="dynamodb:Query", resource=log) == ALLOW
    assert evaluate(docs, action="dynamodb:Query", resource=f"{log}/index/by_day") == ALLOW
    assert evaluate(docs, action="dynamodb:PutItem", resource=log) == IMPLICIT_DENY
    assert evaluate(docs, action="dynamodb:Query", resource=identity) == DENY
    assert evaluate(docs, action="cloudtrail:LookupEvents") == ALLOW
    assert evaluate(docs, action="lambda:PutFunctionConcurrency",
                    resource=f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-national-processor") \
        == IMPLICIT_DENY


def test_no_person_may_stop_the_provision_log_sealer(nagano: Synth) -> None:
    """Issue 12 item 5: the national operators' emergency stop covered every jukinet-national-*
    function, the sealer included: set to concurrency 0, the log went unsealed unnoticed."""
    template = nagano.templates[tier_stacks(nagano)["national"]]
    roles = people_roles(template, "national")
    sealer = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-national-provision-sealer"
    processor = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-national-processor"
    stoppers = [name for name in roles
                if evaluate(policies_of(template, roles[name]), action="lambda:PutFunctionConcurrency",
                            resource=processor) == ALLOW]
    assert "jukinet-national-operator" in stoppers
    for name in roles:
        docs = policies_of(template, roles[name])
        for action in ("lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"):
            assert evaluate(docs, action=action, resource=sealer) in (DENY, IMPLICIT_DENY), (name, action)
        if name in stoppers:
            assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=sealer) == DENY, name


def test_auditors_read_the_seal_archive_to_check_each_seals_copy(nagano: Synth) -> None:
    template = nagano.templates[tier_stacks(nagano)["national"]]
    docs = policies_of(template, people_roles(template, "national")["jukinet-national-auditor"])
    [archive] = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"
                 and r["Properties"].get("BucketName", "").startswith("jukinet-provision-seals-")]
    statements = [st for doc in docs for st in doc["Statement"] if st.get("Sid") == "ReadSealArchive"]
    assert statements and set(statements[0]["Action"]) == {"s3:GetObject", "s3:ListBucket"}
    assert archive in json.dumps(statements[0]["Resource"])


def test_no_person_may_silence_the_break_glass_alarm(nagano: Synth) -> None:
    for tier, stack in tier_stacks(nagano).items():
        template = nagano.templates[stack]
        alarm = f"arn:aws:cloudwatch:ap-northeast-1:{ACCOUNT}:alarm:jukinet-{tier}-break-glass-used"
        for name, role in people_roles(template, tier).items():
            docs = policies_of(template, role)
            for action in ("cloudwatch:SetAlarmState", "cloudwatch:DisableAlarmActions", "cloudwatch:DeleteAlarms"):
                assert evaluate(docs, action=action, resource=alarm) != ALLOW, (name, action)


# --- contractors: access that ends by itself ------------------------------------------------------


def _contractor(small: Synth) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    template = small.templates[tier_stacks(small)["pref-200000"]]
    role = people_roles(template, "pref-200000")["jukinet-pref-200000-contractor-ops-support"]
    return template, role, policies_of(template, role)


def test_every_contractor_allow_and_its_trust_carry_the_configured_expiry(small: Synth) -> None:
    _, role, docs = _contractor(small)
    bound = f"{EXPIRES.isoformat()}T00:00:00+09:00"
    allows = [st for doc in docs for st in doc["Statement"] if st["Effect"] == "Allow"]
    assert allows
    for st in allows:
        assert st["Condition"]["DateLessThan"] == {"aws:CurrentTime": bound}, st.get("Sid")
    for st in role["AssumeRolePolicyDocument"]["Statement"]:
        assert st["Condition"]["DateLessThan"] == {"aws:CurrentTime": bound}
    tags = {t["Key"]: t["Value"] for t in role["Tags"]}
    assert tags["jukinet:expires"] == EXPIRES.isoformat() and tags["jukinet:responsibility"] == "contractor"


def test_contractor_access_is_refused_on_and_after_the_expiry_day(small: Synth) -> None:
    """The day before (to the last second, JST) the contractor may assume the role and use every
    right it has; from 00:00 JST on the expiry day neither assuming nor using works."""
    _, role, docs = _contractor(small)
    trust = role["AssumeRolePolicyDocument"]
    vendor = f"{USER}vendor1"
    day_before = EXPIRES - dt.timedelta(days=1)
    moments = {
        "the day before, morning": (jst(day_before, 9), ALLOW),
        "the last second": (jst(day_before, 23, 59, 59), ALLOW),
        "the expiry day, 00:00 JST": (jst(EXPIRES), IMPLICIT_DENY),
        "the expiry day, 08:59:59 JST (still the day before in UTC)": (jst(EXPIRES, 8, 59, 59), IMPLICIT_DENY),
        "a month later": (jst(EXPIRES + dt.timedelta(days=30), 12), IMPLICIT_DENY),
    }
    allows = [st for doc in docs for st in doc["Statement"] if st["Effect"] == "Allow"]
    for what, (moment, expected) in moments.items():
        assert evaluate(trust, action="sts:AssumeRole", principal=vendor, context=mfa(moment)) == expected, what
        for st in allows:
            action = as_list(st["Action"])[0]
            resource = as_list(st["Resource"])[0]
            assert evaluate(docs, action=action, resource=resource, context={"aws:CurrentTime": moment}) == expected, \
                (what, st.get("Sid"))
    # Without MFA or as someone else: never.
    assert evaluate(trust, action="sts:AssumeRole", principal=vendor,
                    context={**mfa(jst(day_before, 9)), "aws:MultiFactorAuthPresent": False}) == IMPLICIT_DENY
    assert evaluate(trust, action="sts:AssumeRole", principal=f"{USER}operator",
                    context=mfa(jst(day_before, 9))) == IMPLICIT_DENY


def test_contractors_get_operator_reads_on_their_tier_only(small: Synth) -> None:
    template, _, docs = _contractor(small)
    own = f"arn:aws:logs:ap-northeast-1:{ACCOUNT}:log-group:/aws/lambda/jukinet-pref-200000-processor:*"
    other = f"arn:aws:logs:ap-northeast-1:{ACCOUNT}:log-group:/aws/lambda/jukinet-national-processor:*"
    now = {"aws:CurrentTime": jst(TODAY, 12)}
    assert evaluate(docs, action="logs:FilterLogEvents", resource=own, context=now) == ALLOW
    assert evaluate(docs, action="logs:FilterLogEvents", resource=other, context=now) == IMPLICIT_DENY
    fn = f"arn:aws:lambda:ap-northeast-1:{ACCOUNT}:function:jukinet-pref-200000-processor"
    assert evaluate(docs, action="lambda:PutFunctionConcurrency", resource=fn, context=now) == IMPLICIT_DENY
    envelope = key_arn(template, "alias/jukinet/pref-200000/envelope")
    assert evaluate(docs, action="kms:Decrypt", resource=envelope, context=now) == DENY
    for name in people_roles(small.templates[tier_stacks(small)["national"]], "national"):
        assert "contractor" not in name


def test_an_expired_contract_is_not_synthesized_and_synth_warns(small: Synth) -> None:
    national = small.templates[tier_stacks(small)["national"]]
    assert "jukinet-national-contractor-old-vendor" not in people_roles(national, "national")
    warnings = [m["data"] for path in small.outdir.glob("*.metadata.json")
                for entries in json.loads(path.read_text()).values() for m in entries
                if m["type"] == "aws:cdk:warning"]
    assert any("contract old-vendor" in str(w) and "expired" in str(w) for w in warnings)


def test_saml_people_are_trusted_by_their_name_id_only(small: Synth) -> None:
    template = small.templates[tier_stacks(small)["pref-200000"]]
    trust = people_roles(template, "pref-200000")["jukinet-pref-200000-operator"]["AssumeRolePolicyDocument"]
    provider = f"arn:aws:iam::{ACCOUNT}:saml-provider/test-idp"
    ok = {"SAML:aud": "https://signin.aws.amazon.com/saml", "saml:sub": "saml.user@example.jp"}
    assert evaluate(trust, action="sts:AssumeRoleWithSAML", principal=provider, context=ok) == ALLOW
    assert evaluate(trust, action="sts:AssumeRoleWithSAML", principal=provider,
                    context={**ok, "saml:sub": "someone.else@example.jp"}) == IMPLICIT_DENY




# --- the configuration's rules ------------------------------------------------------------------------


def _people(**changes: Any) -> People:
    base = small_people()
    return dataclasses.replace(base, **changes)


def test_the_demo_people_load_and_name_every_role_in_every_tier() -> None:
    people = load_people(DATA_DIR / "operators.demo.toml")
    assert people.demo_data
    for tier in ("national", "pref-200000", "muni-200000"):
        for kind in RESPONSIBILITY_ROLES:
            assert people.holders(tier, kind), (tier, kind)


def test_a_contract_more_than_a_year_ahead_is_refused() -> None:
    today = dt.date(2026, 11, 26)
    far = Contract("far", "Vendor", "national", ("vendor1",), today, today + dt.timedelta(days=MAX_CONTRACT_DAYS + 1))
    people = _people(contracts=(far,))
    with pytest.raises(ConfigError, match=r"contract 'far': expires 2027-11-28 is more than 366 days after today "
                                          r"\(2026-11-26\)"):
        people.validate_on(today)
    people.validate_on(today + dt.timedelta(days=1))  # a day later it is within the year


def test_a_deployment_refuses_a_contract_beyond_a_year_at_synth() -> None:
    import aws_cdk as cdk

    from infra.composition import build

    app = cdk.App(context=cdk_context("nagano-demo"), analytics_reporting=False)
    with offline(), pytest.raises(ConfigError, match="contract 'ops-support'.*at most a year at a time"):
        build(app, small_deployment(), today=EXPIRES - dt.timedelta(days=MAX_CONTRACT_DAYS + 5), checks=False)


def test_a_contract_must_end_after_it_starts() -> None:
    with pytest.raises(ConfigError, match="contract 'x1': since 2026-04-01 must precede expires 2026-04-01"):
        Contract("x1", "Vendor", "national", ("a",), dt.date(2026, 4, 1), dt.date(2026, 4, 1))


def test_a_contract_of_unknown_people_or_of_staff_is_refused() -> None:
    since, until = TODAY - dt.timedelta(days=1), TODAY + dt.timedelta(days=10)
    with pytest.raises(ConfigError, match=r"contract 'ghost': unknown people \['nobody'\]"):
        _people(contracts=(Contract("ghost", "V", "national", ("nobody",), since, until),))
    with pytest.raises(ConfigError, match=r"contract 'mixed': its people already hold \['operator'\] in national"):
        _people(contracts=(Contract("mixed", "V", "national", ("operator",), since, until),))


def test_a_person_must_be_one_principal_never_an_account_root() -> None:
    with pytest.raises(ConfigError, match="an account root names no person"):
        Person("root", "Root", f"arn:aws:iam::{ACCOUNT}:root")
    with pytest.raises(ConfigError, match="needs saml_subject"):
        Person("saml", "SAML", f"arn:aws:iam::{ACCOUNT}:saml-provider/idp")
    with pytest.raises(ConfigError, match="two persons share one principal"):
        _people(persons=(Person("a1", "A", f"{USER}same"), Person("b1", "B", f"{USER}same")), assignments=(),
                contracts=())


def test_security_officers_must_sign_in_as_iam_principals() -> None:
    saml_officer = Assignment("national", "security-officer", "samluser", TODAY)
    with pytest.raises(ConfigError, match="'samluser' is a security officer of national, who may break glass"):
        _people(assignments=(*small_people().assignments, saml_officer))


def test_an_auditor_holds_no_other_role_in_the_tier_audited() -> None:
    double = Assignment("national", "auditor", "operator", TODAY)
    with pytest.raises(ConfigError, match=r"'operator' cannot audit national and hold \['operator'\] there"):
        _people(assignments=(*small_people().assignments, double))


def test_assignments_name_known_roles_people_and_tiers() -> None:
    with pytest.raises(ConfigError, match="role 'admin' must be one of"):
        Assignment("national", "admin", "chief", TODAY)
    with pytest.raises(ConfigError, match="unknown person 'nobody'"):
        _people(assignments=(Assignment("national", "operator", "nobody", TODAY),))
    people = _people(assignments=(Assignment("pref-130001", "operator", "operator", TODAY),), contracts=())
    with pytest.raises(ConfigError, match="tier pref-130001 is not a tier of this deployment"):
        people.validate(("national", "pref-200000", "muni-200000"))


def test_people_roles_are_named_from_the_prefix_and_tier() -> None:
    names = Names("jukinet")
    assert names.people_path("pref-200000") == "/jukinet/pref-200000-people/"
    assert names.people_role("pref-200000", BREAK_GLASS) == "jukinet-pref-200000-break-glass"
    assert names.people_role_arn(nagano_demo().national.env, "national", "operator") == \
        f"arn:aws:iam::{ACCOUNT}:role/jukinet/national-people/jukinet-national-operator"
    longest = Names("abcdefghij").people_role("muni-200000", "contractor-" + "x" * 20)
    assert len(longest) <= 64
