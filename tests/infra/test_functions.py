"""Lambda functions, their roles and policies, and the environment contract with the runtime."""

from __future__ import annotations

import re

import pytest

import jukinet.settings
from infra.naming import Names, cs_state_partition

from .conftest import Synth, as_list, statements

pytestmark = pytest.mark.slow

HANDLERS = {
    "jukinet.handlers.municipality_cs.handler": "MunicipalityCsSettings",
    "jukinet.handlers.prefecture_processor.handler": "PrefectureSettings",
    "jukinet.handlers.national_processor.handler": "NationalSettings",
    "jukinet.handlers.provision_api.handler": "ProvisionSettings",
    "jukinet.handlers.provision_batch.handler": "ProvisionSettings",
    "jukinet.handlers.provision_sealer.handler": "SealerSettings",
    "jukinet.handlers.card_api.handler": "CardSettings",
    "jukinet.handlers.channel_endpoint.handler": "ChannelSettings",
    "jukinet.handlers.ledger_watch.handler": "LedgerWatchSettings",
    "jukinet.handlers.reconciliation.handler": "ReconciliationSettings",
    "jukinet.handlers.monitoring_report.handler": "MonitoringReportSettings",
}
PROVISION_HANDLERS = {h for h in HANDLERS if ".provision_" in h}
WATCH_HANDLER = "jukinet.handlers.ledger_watch.handler"
RECONCILIATION_HANDLER = "jukinet.handlers.reconciliation.handler"
MONITORING_REPORT_HANDLER = "jukinet.handlers.monitoring_report.handler"


def _runtime_version(runtime: str) -> tuple[int, int]:
    match = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    assert match, runtime
    return int(match[1]), int(match[2])


def test_there_is_one_cs_per_municipality_one_processor_per_prefecture_and_one_national(every: Synth) -> None:
    functions = every.props("AWS::Lambda::Function")
    handlers = [f["Handler"] for f in functions]
    d = every.deployment
    assert handlers.count("jukinet.handlers.municipality_cs.handler") == sum(
        len(p.municipality_tier.municipalities) for p in d.prefectures)
    assert handlers.count("jukinet.handlers.prefecture_processor.handler") == len(d.prefectures)
    assert handlers.count("jukinet.handlers.national_processor.handler") == 1
    assert handlers.count("jukinet.handlers.card_api.handler") == len(d.prefectures)  # one counter API per tier
    # one channel function per municipality tier, when the deployment has the channel (decision 0041)
    assert handlers.count("jukinet.handlers.channel_endpoint.handler") == (len(d.prefectures) if d.channel else 0)
    assert handlers.count(WATCH_HANDLER) == len(d.prefectures) + 1  # a ledger watch per processing tier
    assert handlers.count(RECONCILIATION_HANDLER) == len(d.prefectures) + 1  # and a nightly reconciliation
    assert handlers.count(MONITORING_REPORT_HANDLER) == len(d.prefectures) + 1  # and a monthly report
    for provision in PROVISION_HANDLERS:
        assert handlers.count(provision) == (1 if d.agencies else 0), provision
    assert set(handlers) <= HANDLERS.keys()  # and no other function (no custom-resource providers)


def test_functions_run_python_312_or_newer_on_arm64_in_the_vpc_with_limits_tracing_and_own_logs(every: Synth) -> None:
    for stack, _, res in every.resources("AWS::Lambda::Function"):
        f = res["Properties"]
        assert f["Architectures"] == ["arm64"]
        assert _runtime_version(f["Runtime"]) >= (3, 12)
        assert len(f["VpcConfig"]["SubnetIds"]) >= 2 and f["VpcConfig"]["SecurityGroupIds"]
        assert f["ReservedConcurrentExecutions"] >= 1
        assert f["TracingConfig"] == {"Mode": "Active"}
        assert "Layers" not in f
        log_group_ref = f["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = every.templates[stack]["Resources"][log_group_ref]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{f['FunctionName']}"
        assert log_group["RetentionInDays"] > 0 and "KmsKeyId" in log_group


COUNTER_HANDLER = "jukinet.handlers.card_api.handler"


def test_all_functions_share_one_code_asset_but_the_provision_functions_share_another(every: Synth) -> None:
    """The provision functions' asset is the same bundle plus agreements.json (test_provision.py);
    each ledger watch's, the bundle plus its tier's ledger-watch.json; each reconciliation's, the
    bundle plus its tier's reconciliation.json; the counter functions', with the channel, the
    bundle plus municipality-names.json (one asset: the deployment's names; decision 0046)."""
    functions = every.props("AWS::Lambda::Function")
    counters = {f["Code"]["S3Key"] for f in functions if f["Handler"] == COUNTER_HANDLER}
    assert len(counters) == 1
    if every.deployment.channel:
        shared_handlers = PROVISION_HANDLERS | {WATCH_HANDLER, RECONCILIATION_HANDLER, COUNTER_HANDLER}
    else:
        shared_handlers = PROVISION_HANDLERS | {WATCH_HANDLER, RECONCILIATION_HANDLER}
    shared = {f["Code"]["S3Key"] for f in functions if f["Handler"] not in shared_handlers}
    assert not every.deployment.channel or not counters & shared
    provision = {f["Code"]["S3Key"] for f in functions if f["Handler"] in PROVISION_HANDLERS}
    watches = [f["Code"]["S3Key"] for f in functions if f["Handler"] == WATCH_HANDLER]
    assert len(shared) == 1
    assert len(provision) == (1 if every.deployment.agencies else 0) and not provision & shared
    assert watches and not set(watches) & (shared | provision)  # equal watch files share an asset
    reconciliations = {f["Code"]["S3Key"] for f in functions if f["Handler"] == RECONCILIATION_HANDLER}
    assert reconciliations and not reconciliations & (shared | provision | set(watches))


def test_environment_provides_every_setting_the_handler_requires(every: Synth) -> None:
    for f in every.props("AWS::Lambda::Function"):
        model = getattr(jukinet.settings, HANDLERS[f["Handler"]])
        env = f["Environment"]["Variables"]
        required = {name for name, field in model.model_fields.items() if field.is_required()}
        assert required <= env.keys(), (f["FunctionName"], required - env.keys())
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Jukinet"
        assert env["POWERTOOLS_SERVICE_NAME"].startswith("jukinet-")


def test_processor_environment_points_at_the_next_tier_by_derived_names(nagano: Synth) -> None:
    env = next(f["Environment"]["Variables"] for f in nagano.props("AWS::Lambda::Function")
               if f["Handler"] == "jukinet.handlers.prefecture_processor.handler")
    assert env["PREFECTURE_CODE"] == "200000"
    assert env["FORWARD_QUEUE_URL"] == "https://sqs.ap-northeast-1.amazonaws.com/123456789012/jukinet-national-inbound"
    assert env["SENDER_KEY_ALIAS_PREFIX"] == "arn:aws:kms:ap-northeast-1:123456789012:alias/jukinet/signing/"
    national = next(f["Environment"]["Variables"] for f in nagano.props("AWS::Lambda::Function")
                    if f["Handler"] == "jukinet.handlers.national_processor.handler")
    assert national["ALLOWED_PREFECTURES"] == "200000"
    cs = next(f["Environment"]["Variables"] for f in nagano.props("AWS::Lambda::Function")
              if f.get("FunctionName") == "jukinet-cs-202011")
    assert cs["OUTBOUND_QUEUE_URL"] == "https://sqs.ap-northeast-1.amazonaws.com/123456789012/jukinet-pref-200000-inbound"
    assert cs["DROP_ZONE_BUCKET"] == "jukinet-dropzone-123456789012-ap-northeast-1-202011"
    assert cs["STATE_TABLE_NAME"] == "jukinet-muni-200000-cs-state"


def test_cs_state_partition_matches_the_runtime_key_layout() -> None:
    from jukinet.adapters.cs_state import CsState

    assert CsState("table", "202011").pk == cs_state_partition("202011")


def _policy_statements(synth: Synth) -> list[tuple[str, dict]]:
    found = []
    for _, lid, res in synth.resources("AWS::IAM::ManagedPolicy"):
        found += [(lid, s) for s in statements(res["Properties"]["PolicyDocument"])]
    for _, lid, res in synth.resources("AWS::IAM::Role"):
        for inline in res["Properties"].get("Policies", []):
            found += [(lid, s) for s in statements(inline["PolicyDocument"])]
    return found


def test_no_policy_grants_all_actions_or_all_kms_actions(every: Synth) -> None:
    for lid, s in _policy_statements(every):
        for action in as_list(s["Action"]):
            assert action != "*" and not action.endswith(":*"), (lid, action)


def test_roles_carry_no_inline_policies(every: Synth) -> None:
    """But the drop-zone writers: one statement each, PutObject into its own incoming/ (decision
    0051: inline, so that a municipality's CS inbox fits the 500-resource stack)."""
    assert not every.resources("AWS::IAM::Policy")
    names = Names.of(every.deployment)
    writer_paths = {names.drop_zone_writers_path(p.code) for p in every.deployment.prefectures}
    for role in every.props("AWS::IAM::Role"):
        if role.get("Path") in writer_paths:
            [policy] = role["Policies"]
            [statement] = policy["PolicyDocument"]["Statement"]
            assert statement["Action"] == "s3:PutObject" and statement["Resource"].endswith("/incoming/*")
            assert "ManagedPolicyArns" not in role
        else:
            assert "Policies" not in role, role.get("RoleName")


def test_a_cs_role_touches_only_its_own_partition_key_bucket_and_queue(nagano: Synth) -> None:
    names = Names.of(nagano.deployment)
    for _, _, res in nagano.resources("AWS::IAM::ManagedPolicy"):
        desc = res["Properties"].get("Description", "")
        if not desc.startswith("Permissions of jukinet-cs-"):
            continue
        code = desc.rsplit("-", 1)[1]
        by_sid = {s.get("Sid"): s for s in statements(res["Properties"]["PolicyDocument"])}
        assert by_sid["OwnStatePartitionOnly"]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == [
            f"MUNI#{code}"]
        bucket = names.drop_zone_bucket(nagano.deployment.prefectures[0].municipality_tier.env, code)
        assert by_sid["ReadIncomingExports"]["Resource"] == f"arn:aws:s3:::{bucket}/incoming/*"
        assert by_sid["WriteReports"]["Resource"] == f"arn:aws:s3:::{bucket}/reports/*"
        assert by_sid["SendToPrefecture"]["Resource"] == (
            "arn:aws:sqs:ap-northeast-1:123456789012:jukinet-pref-200000-inbound")
        assert "Fn::GetAtt" in by_sid["SignNotices"]["Resource"]


def test_function_roles_live_under_their_tier_path(every: Synth) -> None:
    # people's roles: test_responsibility.py; the existing systems' drop-zone writers: test_drop_zone_edge.py;
    # the counter-staff roles: test_counter.py
    paths = {r["RoleName"]: r["Path"] for r in every.props("AWS::IAM::Role")
             if "RoleName" in r and not r["Path"].endswith(("-people/", "-writers/", "-counter/"))}
    assert len(paths) == len(every.props("AWS::Lambda::Function"))
    for name, path in paths.items():
        tier = "national" if "national" in name else (
            "pref-" + name.split("-")[2] if "-pref-" in name else None)
        if tier:
            assert path == f"/jukinet/{tier}/"
        else:
            assert re.fullmatch(r"/jukinet/muni-\d{6}/", path)
