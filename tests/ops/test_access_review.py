"""``jukinet access-review``: the configuration's holders, contractors' expiry, and the drift
against the roles deployed in an account (moto's IAM standing in for one)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json

import boto3
import pytest
from moto import mock_aws

from infra.config import Contract, load_deployment
from infra.naming import Names
from jukinet_ops import access_review as review_module
from jukinet_ops.access_review import (
    DeployedRole,
    build_review,
    configured_rows,
    parse_role,
    read_deployed,
    review_csv,
    review_markdown,
    trust_expiry,
    trust_principals,
)
from jukinet_ops.cli import main
from embedded_aws.iam_policy import ALLOW, DENY, IMPLICIT_DENY, evaluate

DEMO = load_deployment("nagano-demo")
NAMES = Names.of(DEMO)
EXPIRES = DEMO.people.contracts[0].expires  # the demo's CS maintenance contract (muni-200000)
ACCOUNT = "123456789012"


def demo_trust(tier: str, kind: str) -> dict:
    """The trust policy synth writes for a people role of the demo (the component's own function)."""
    from infra.components.responsibility import trust_policy

    people = DEMO.people
    if kind.startswith(("drop-zone-writer-", "counter-staff-")):  # trusted by the tier's account
        return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
    if kind == "break-glass":
        return trust_policy(people.holders(tier, "security-officer"), break_glass=True)
    if kind.startswith("contractor-"):
        contract = next(c for c in people.contracts_of(tier) if c.role_kind == kind)
        return trust_policy([people.person(p) for p in contract.people], expires_at=contract.expires_at)
    return trust_policy(people.holders(tier, kind))


def deployed_as_configured() -> list[DeployedRole]:
    roles = []
    for tier in DEMO.tiers():
        kinds = {r.role for r in configured_rows(DEMO, EXPIRES) if r.tier == tier}
        for kind in kinds:
            doc = demo_trust(tier, kind)
            name = (NAMES.drop_zone_writer(kind.rsplit("-", 1)[1]) if kind.startswith("drop-zone-writer-")
                    else NAMES.counter_role(kind.rsplit("-", 1)[1]) if kind.startswith("counter-staff-")
                    else NAMES.people_role(tier, kind))
            roles.append(DeployedRole(tier=tier, kind=kind, name=name,
                                      principals=trust_principals(doc), expires=trust_expiry(doc)))
    return roles


ALL_CHECKED = {tier: f"checked in account {ACCOUNT}" for tier in DEMO.tiers()}


# --- the configuration ------------------------------------------------------------------------


def test_every_holder_appears_with_role_title_and_since() -> None:
    rows = configured_rows(DEMO, dt.date(2026, 11, 26))
    by_key = {(r.tier, r.role, r.person): r for r in rows}
    chief = by_key[("pref-200000", "chief-security-officer", "yamada")]
    assert (chief.title, chief.role_name, chief.since) == ("統括責任者", "jukinet-pref-200000-chief-security-officer",
                                                            dt.date(2024, 4, 1))
    assert by_key[("pref-200000", "break-glass", "sasaki")].title.startswith("緊急時閲覧")
    saml = by_key[("pref-200000", "deputy-chief-security-officer", "yamamoto")]
    assert saml.principal.endswith("saml:sub=yamamoto.satoshi@pref.nagano.example")
    contractors = [r for r in rows if r.role == "contractor-cs-maintenance"]
    assert {r.person for r in contractors} == {"hayashi", "shimizu"}
    assert all(r.until == EXPIRES and r.title == "委託" and r.status == "active" for r in contractors)
    assert all(r.deployed == "not checked" for r in rows)


def test_each_municipality_has_one_drop_zone_writer_in_the_review() -> None:
    rows = [r for r in configured_rows(DEMO, dt.date(2026, 11, 26)) if r.role.startswith("drop-zone-writer-")]
    municipalities = DEMO.prefectures[0].municipality_tier.municipalities
    assert sorted(r.role_name for r in rows) == sorted(NAMES.drop_zone_writer(m.code) for m in municipalities)
    nagano = next(r for r in rows if r.role == "drop-zone-writer-202011")
    assert (nagano.tier, nagano.title, nagano.principal) == (
        "muni-200000", "既存住基システム (drop-zone writer)", f"arn:aws:iam::{ACCOUNT}:root")


def test_a_writer_role_trusting_someone_else_or_a_missing_writer_is_drift() -> None:
    """The attack: a principal added by hand to a municipality's writer role (anyone it trusts
    can drop files that are sent as that municipality's notices)."""
    today = EXPIRES - dt.timedelta(days=60)
    intruder = f"arn:aws:iam::{ACCOUNT}:user/somewhere/mallory"
    deployed = deployed_as_configured()
    writer = next(d for d in deployed if d.kind == "drop-zone-writer-202011")
    deployed = [dataclasses.replace(writer, principals=writer.principals | {intruder}) if d is writer else d
                for d in deployed if d.kind != "drop-zone-writer-202029"]
    review = build_review(DEMO, today, deployed, ALL_CHECKED)
    assert any("jukinet-dropzone-writer-202011" in d and intruder in d for d in review.drift)
    assert any(d.startswith("jukinet-dropzone-writer-202029: not deployed") for d in review.drift)
    assert review.exit_code(strict=True) == 1


def test_each_municipality_has_one_counter_staff_role_in_the_review() -> None:
    rows = [r for r in configured_rows(DEMO, dt.date(2026, 11, 26)) if r.role.startswith("counter-staff-")]
    municipalities = DEMO.prefectures[0].municipality_tier.municipalities
    assert sorted(r.role_name for r in rows) == sorted(NAMES.counter_role(m.code) for m in municipalities)
    nagano = next(r for r in rows if r.role == "counter-staff-202011")
    assert (nagano.tier, nagano.title, nagano.principal) == (
        "muni-200000", "窓口 (counter staff, resident cards)", f"arn:aws:iam::{ACCOUNT}:root")


def test_a_counter_role_trusting_someone_else_is_drift_and_parse_role_reads_it() -> None:
    """The attack: another principal added by hand to a municipality's counter-staff role."""
    role = {"Path": NAMES.counter_roles_path("200000"), "RoleName": NAMES.counter_role("202011"),
            "AssumeRolePolicyDocument": demo_trust("muni-200000", "counter-staff-202011")}
    parsed = parse_role(DEMO, role)
    assert (parsed.tier, parsed.kind) == ("muni-200000", "counter-staff-202011")
    intruder = "arn:aws:iam::999999999999:role/intruder"
    deployed = [dataclasses.replace(d, principals=d.principals | {intruder}) if d.kind == "counter-staff-202011"
                else d for d in deployed_as_configured()]
    review = build_review(DEMO, EXPIRES - dt.timedelta(days=60), deployed, ALL_CHECKED)
    assert any("jukinet-counter-202011" in d and intruder in d for d in review.drift)


def test_parse_role_reads_a_deployed_writer_role() -> None:
    role = {"Path": NAMES.drop_zone_writers_path("200000"), "RoleName": NAMES.drop_zone_writer("202011"),
            "AssumeRolePolicyDocument": demo_trust("muni-200000", "drop-zone-writer-202011")}
    parsed = parse_role(DEMO, role)
    assert (parsed.tier, parsed.kind, parsed.principals) == (
        "muni-200000", "drop-zone-writer-202011", frozenset({f"arn:aws:iam::{ACCOUNT}:root"}))


@pytest.mark.parametrize(("days_before", "status"), [
    (31, "active"), (30, "expires in 30 days"), (1, "expires in 1 day"), (0, "expired"), (-5, "expired")])
def test_contractors_are_flagged_expiring_within_30_days_and_expired(days_before: int, status: str) -> None:
    today = EXPIRES - dt.timedelta(days=days_before)
    rows = [r for r in configured_rows(DEMO, today) if r.role.startswith("contractor-")]
    assert {r.status for r in rows} == {status}
    text = review_markdown(build_review(DEMO, today))
    if status.startswith("expires in"):
        assert "**expires soon**: jukinet-muni-200000-contractor-cs-maintenance" in text
    if status == "expired":
        assert "**expired**: jukinet-muni-200000-contractor-cs-maintenance" in text


# --- configuration against deployment -------------------------------------------------------------


def test_a_deployment_as_configured_shows_every_holder_deployed_and_no_drift() -> None:
    today = EXPIRES - dt.timedelta(days=60)
    review = build_review(DEMO, today, deployed_as_configured(), ALL_CHECKED)
    assert {r.deployed for r in review.rows} == {"yes"}
    assert review.drift == [] and review.problems == [] and review.exit_code(strict=True) == 0


def test_drift_both_ways_is_listed_and_fails_only_strict() -> None:
    today = EXPIRES - dt.timedelta(days=60)
    deployed = deployed_as_configured()
    intruder = f"arn:aws:iam::{ACCOUNT}:user/somewhere/mallory"
    operator = next(d for d in deployed if (d.tier, d.kind) == ("national", "operator"))
    kobayashi = DEMO.people.person("kobayashi").principal
    changed = dataclasses.replace(operator, principals=(operator.principals - {kobayashi}) | {intruder})
    deployed = [changed if d is operator else d for d in deployed]
    deployed.append(DeployedRole("national", "contractor-old", "jukinet-national-contractor-old",
                                 frozenset({f"arn:aws:iam::{ACCOUNT}:user/x/old"}), EXPIRES + dt.timedelta(days=10)))
    review = build_review(DEMO, today, deployed, ALL_CHECKED)
    extra = [r for r in review.rows if r.principal == intruder]
    assert [(r.role_name, r.person, r.deployed) for r in extra] == [
        ("jukinet-national-operator", "?", "deployed only")]
    assert "in the deployed trust policy, not in the configuration" in extra[0].notes
    missing = next(r for r in review.rows if (r.tier, r.role, r.person) == ("national", "operator", "kobayashi"))
    assert missing.deployed == "no" and "not in the deployed trust policy" in missing.notes
    assert any("role deployed but not in the configuration" in r.notes for r in review.rows)
    assert len(review.drift) == 3 and review.problems == []
    assert review.exit_code() == 0 and review.exit_code(strict=True) == 1


def test_an_expired_contractor_still_deployed_is_a_problem_and_exits_1() -> None:
    after = EXPIRES + dt.timedelta(days=3)
    review = build_review(DEMO, after, deployed_as_configured(), ALL_CHECKED)
    assert len(review.problems) == 1
    assert "jukinet-muni-200000-contractor-cs-maintenance: contract expired on" in review.problems[0]
    assert review.exit_code() == 1
    # Removed from the deployment (the next deploy after expiry drops the role): no problem, no drift.
    gone = [d for d in deployed_as_configured() if not d.kind.startswith("contractor-")]
    review = build_review(DEMO, after, gone, ALL_CHECKED)
    assert review.problems == [] and review.drift == [] and review.exit_code(strict=True) == 0
    assert {r.deployed for r in review.rows if r.role.startswith("contractor-")} == {"no"}


def test_a_deployed_expiry_that_differs_from_the_configuration_is_drift() -> None:
    today = EXPIRES - dt.timedelta(days=60)
    deployed = [dataclasses.replace(d, expires=EXPIRES + dt.timedelta(days=365)) if d.kind.startswith("contractor-")
                else d for d in deployed_as_configured()]
    review = build_review(DEMO, today, deployed, ALL_CHECKED)
    assert any("deployed expiry" in d and f"configured {EXPIRES}" in d for d in review.drift)


def test_tiers_not_reachable_are_not_judged() -> None:
    checked = {**ALL_CHECKED, "national": "not checked: the tier is in account 111111111111"}
    review = build_review(DEMO, EXPIRES - dt.timedelta(days=60), [], checked)
    assert {r.deployed for r in review.rows if r.tier == "national"} == {"not checked"}
    assert {r.deployed for r in review.rows if r.tier != "national"} == {"no"}


# --- trust policies read back -------------------------------------------------------------------------


def test_trust_principals_and_expiry_read_back_what_synth_writes() -> None:
    doc = demo_trust("muni-200000", "contractor-cs-maintenance")
    assert trust_principals(doc) == {DEMO.people.person("hayashi").principal,
                                     DEMO.people.person("shimizu").principal}
    assert trust_expiry(doc) == EXPIRES
    saml = demo_trust("pref-200000", "deputy-chief-security-officer")
    assert trust_principals(saml) == {("arn:aws:iam::123456789012:saml-provider/nagano-pref-idp "
                                      "saml:sub=yamamoto.satoshi@pref.nagano.example")}
    assert trust_expiry(saml) is None


def test_the_contractors_trust_stops_at_midnight_jst_of_the_expiry_day() -> None:
    doc = demo_trust("muni-200000", "contractor-cs-maintenance")
    hayashi = DEMO.people.person("hayashi").principal
    jst = dt.timezone(dt.timedelta(hours=9))

    def at(moment: dt.datetime) -> str:
        return evaluate(doc, action="sts:AssumeRole", principal=hayashi,
                        context={"aws:MultiFactorAuthPresent": "true", "aws:CurrentTime": moment.isoformat()})

    last_day = EXPIRES - dt.timedelta(days=1)
    assert at(dt.datetime(last_day.year, last_day.month, last_day.day, 23, 59, 59, tzinfo=jst)) == ALLOW
    assert at(dt.datetime(EXPIRES.year, EXPIRES.month, EXPIRES.day, tzinfo=jst)) == IMPLICIT_DENY
    assert at(dt.datetime(EXPIRES.year, EXPIRES.month, EXPIRES.day, tzinfo=jst) - dt.timedelta(seconds=1)) == ALLOW


def test_the_evaluator_applies_denies_first_and_understands_the_operators_it_claims() -> None:
    doc = {"Statement": [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"},
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*",
         "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LEDGER#*"]}}},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:ViaService": "dynamodb.ap-northeast-1.amazonaws.com"}}},
    ]}
    assert evaluate(doc, action="s3:GetObject", resource="arn:aws:s3:::b/x") == ALLOW
    assert evaluate(doc, action="S3:GETOBJECT", resource="arn:aws:s3:::b/x") == ALLOW  # actions ignore case
    assert evaluate(doc, action="s3:GetObject", resource="arn:aws:s3:::b/secret/x") == DENY
    assert evaluate(doc, action="s3:PutObject", resource="arn:aws:s3:::b/x") == IMPLICIT_DENY
    assert evaluate(doc, action="dynamodb:GetItem", context={"dynamodb:LeadingKeys": ["LEDGER#1"]}) == ALLOW
    assert evaluate(doc, action="dynamodb:GetItem", context={"dynamodb:LeadingKeys": ["R#1"]}) == IMPLICIT_DENY
    assert evaluate(doc, action="kms:Decrypt") == DENY  # a negated operator holds when its key is missing
    assert evaluate(doc, action="kms:Decrypt",
                    context={"kms:ViaService": "dynamodb.ap-northeast-1.amazonaws.com"}) == IMPLICIT_DENY


# --- reading a deployment (moto's IAM) -------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEMO.region)
    with mock_aws():
        yield boto3.client("iam", region_name=DEMO.region)


def _create(iam, tier: str, kind: str, document: dict | None = None) -> None:
    iam.create_role(RoleName=NAMES.people_role(tier, kind), Path=NAMES.people_path(tier),
                    AssumeRolePolicyDocument=json.dumps(document or demo_trust(tier, kind)), MaxSessionDuration=3600)


def test_read_deployed_finds_the_people_roles_of_this_deployment_only(aws) -> None:
    _create(aws, "pref-200000", "operator")
    _create(aws, "muni-200000", "contractor-cs-maintenance")
    aws.create_role(RoleName="jukinet-pref-200000-processor", Path="/jukinet/pref-200000/",
                    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole"}]}))
    deployed, checked = read_deployed(DEMO)
    assert set(checked.values()) == {f"checked in account {ACCOUNT}"}
    assert {(d.tier, d.kind) for d in deployed} == {("pref-200000", "operator"),
                                                    ("muni-200000", "contractor-cs-maintenance")}
    contractor = next(d for d in deployed if d.kind.startswith("contractor-"))
    assert contractor.expires == EXPIRES and len(contractor.principals) == 2


def test_parse_role_ignores_roles_outside_the_people_paths() -> None:
    role = {"Path": "/jukinet/national/", "RoleName": "jukinet-national-operator", "AssumeRolePolicyDocument": {}}
    assert parse_role(DEMO, role) is None
    encoded = {"Path": "/jukinet/national-people/", "RoleName": "jukinet-national-operator",
               "AssumeRolePolicyDocument": "%7B%22Statement%22%3A%20%5B%5D%7D"}
    assert parse_role(DEMO, encoded) == DeployedRole("national", "operator", "jukinet-national-operator",
                                                    frozenset(), None)


def test_the_command_exits_1_when_an_expired_contractor_is_still_deployed(aws, capsys) -> None:
    for tier in DEMO.tiers():
        for kind in {r.role for r in configured_rows(DEMO, EXPIRES) if r.tier == tier}:
            _create(aws, tier, kind)
    before = (EXPIRES - dt.timedelta(days=10)).isoformat()
    assert main(["access-review", "--today", before]) == 0
    out = capsys.readouterr().out
    assert "| muni-200000 | contractor-cs-maintenance | 委託 |" in out
    assert "expires in 10 days" in out and "## Problems\n\nNone." in out
    after = (EXPIRES + dt.timedelta(days=1)).isoformat()
    assert main(["access-review", "--today", after]) == 1
    captured = capsys.readouterr()
    assert "contract expired on" in captured.out and "contract expired on" in captured.err
    aws.delete_role(RoleName="jukinet-muni-200000-contractor-cs-maintenance")
    assert main(["access-review", "--today", after, "--strict"]) == 0


def test_the_command_writes_csv_and_reviews_configuration_alone_without_aws(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(review_module, "read_deployed", lambda d: pytest.fail("--config-only must not call AWS"))
    out = tmp_path / "review.csv"
    assert main(["access-review", "--config-only", "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(review_module.COLUMNS)
    assert {r["tier"] for r in rows} == {"national", "pref-200000", "muni-200000"}
    assert {r["deployed"] for r in rows} == {"not checked"}
    assert review_csv(build_review(DEMO, dt.date(2026, 11, 26))).splitlines()[0].startswith("tier,role,title")


def test_an_unreachable_account_is_reported_not_fatal(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["access-review", "--today", "2026-11-26"]) == 0
    assert "not checked: EndpointConnectionError" in capsys.readouterr().out


def test_expired_contract_in_configuration_is_not_refused_by_the_review(monkeypatch) -> None:
    """Past expiries are reported (and not synthesized), never a configuration error."""
    today = EXPIRES + dt.timedelta(days=40)
    contract = DEMO.people.contracts[0]
    assert isinstance(contract, Contract) and contract.is_expired(today)
    assert DEMO.people.expired_contracts(today) == (contract,)


def test_the_review_lists_each_tiers_rights_on_its_queues_the_channel_queues_included() -> None:
    """Decision 0047: the municipality tier's operator redrives its channel DLQ, its chiefs stop
    the channel function, break-glass reads the channel dead letters — listed beside the
    processing tiers' inbound queues; no role purges."""
    review = build_review(DEMO, EXPIRES)
    rights = {(q.tier, q.role_name): q for q in review.queue_rights}
    operator = rights[("muni-200000", "jukinet-muni-200000-operator")]
    assert operator.queues == "jukinet-muni-200000-channel-dlq → jukinet-muni-200000-channel"
    assert operator.rights.startswith("redrive (jukinet redrive)") and "never purge" in operator.rights
    assert "hold jukinet-muni-200000-channel" in rights[("muni-200000", "jukinet-muni-200000-chief-security-officer")].rights
    assert rights[("muni-200000", "jukinet-muni-200000-break-glass")].queues == "jukinet-muni-200000-channel-dlq"
    assert rights[("pref-200000", "jukinet-pref-200000-operator")].queues == (
        "jukinet-pref-200000-inbound-dlq → jukinet-pref-200000-inbound")
    assert ("national", "jukinet-national-operator") in rights
    text = review_markdown(review)
    assert "## Rights on the message queues" in text
    assert "| muni-200000 | jukinet-muni-200000-operator | jukinet-muni-200000-channel-dlq → " in text
    without = build_review(dataclasses.replace(DEMO, channel=False), EXPIRES)
    assert not [q for q in without.queue_rights if q.tier.startswith("muni-")]
