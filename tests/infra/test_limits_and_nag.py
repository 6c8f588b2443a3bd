"""Stack sizes, no custom resources, no lookups, and zero unacknowledged cdk-nag findings."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import DEFAULT_MAX_MUNICIPALITIES_PER_STACK
from infra.stacks.municipality import RESOURCES_PER_MUNICIPALITY

from .conftest import NODE_BIN, REPO, Synth

pytestmark = pytest.mark.slow

CLOUDFORMATION_RESOURCE_LIMIT = 500


def test_every_stack_stays_under_the_cloudformation_resource_limit(every: Synth) -> None:
    for stack, template in every.templates.items():
        assert len(template["Resources"]) < CLOUDFORMATION_RESOURCE_LIMIT, stack


def test_a_179_municipality_prefecture_is_split_into_several_stacks(large: Synth) -> None:
    chunks = large.built.municipality_stacks["010006"]
    assert len(chunks) == 5
    assert sum(len(c.servers) for c in chunks) == 179
    assert all(len(c.servers) <= DEFAULT_MAX_MUNICIPALITIES_PER_STACK for c in chunks)


def test_the_chunk_size_leaves_headroom_by_measured_cost_per_municipality(large: Synth) -> None:
    """A municipality costs a fixed number of resources; even the largest allowed chunk fits."""
    for chunk in large.built.municipality_stacks["010006"]:
        resources = large.templates[chunk.stack_name]["Resources"].values()
        n = len(chunk.servers)
        alarms = sum(r["Type"] == "AWS::CloudWatch::Alarm" for r in resources)
        assert alarms == 2 * math.ceil(n / 10)
        shared = sum(r["Type"] == "AWS::SQS::QueuePolicy" for r in resources)  # the inboxes' one policy (0051)
        assert shared == 1
        assert (len(resources) - alarms - shared) / n == RESOURCES_PER_MUNICIPALITY
    largest_allowed = 40  # MunicipalityTier.max_per_stack's upper bound
    assert largest_allowed * RESOURCES_PER_MUNICIPALITY + 1 + 2 * math.ceil(largest_allowed / 10) < 450


def test_no_custom_resources_anywhere(every: Synth) -> None:
    for stack, template in every.templates.items():
        for lid, res in template["Resources"].items():
            assert not res["Type"].startswith("Custom::"), (stack, lid)
            assert res["Type"] != "AWS::CloudFormation::CustomResource", (stack, lid)


def test_synth_needs_no_context_lookup(every: Synth) -> None:
    assert not every.manifest.get("missing")
    assert not (REPO / "cdk.context.json").exists()


def test_no_unacknowledged_cdk_nag_finding(every: Synth) -> None:
    """Fails on any new finding of either pack, error or warning level."""
    reports = sorted(every.outdir.glob("*-NagReport.csv"))
    packs = {p.name.split("--")[0] for p in reports}
    assert packs == {"AwsSolutions", "NIST.800.53.R5"}
    assert len(reports) == 2 * len(every.templates)
    open_findings = []
    for report in reports:
        with report.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["Compliance"] not in ("Compliant", "Suppressed"):
                    open_findings.append(f"{report.name}: {row['Rule ID']} {row['Resource ID']} ({row['Compliance']})")
    assert not open_findings, "\n".join(open_findings)


def test_every_acknowledgement_names_a_rule_and_a_specific_reason(nagano: Synth) -> None:
    for template in nagano.templates.values():
        for res in template["Resources"].values():
            for s in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                assert s["id"].startswith(("AwsSolutions-", "NIST.800.53.R5-")), s
                assert len(s["reason"]) >= 40, s


def test_cdk_cli_synth_runs_offline_without_credentials(tmp_path: Path) -> None:
    """The user's path: `cdk synth` with no AWS credentials and every HTTP(S) request sent to a dead proxy."""
    cdk = NODE_BIN / "cdk"
    if not cdk.exists():
        pytest.skip("node_modules not installed (npm install)")
    env = {
        "HOME": str(tmp_path), "PATH": os.pathsep.join([str(NODE_BIN), os.path.dirname(sys.executable),
                                                        os.environ.get("PATH", "")]),
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "CDK_DISABLE_CLI_TELEMETRY": "true", "JUKINET_OFFLINE": "1",
    }
    out = tmp_path / "cdk.out"
    result = subprocess.run([str(cdk), "synth", "--no-notices", "-q", "-o", str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest.get("missing")
    assert not (REPO / "cdk.context.json").exists()
    shutil.rmtree(out, ignore_errors=True)
