"""What keeps `jukinet demo` short without changing what it shows (issue 13, decision 0054):
residents picked by key, not by scanning tables; the assembly reused only when nothing
synthesis reads has changed."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

# -- residents picked by key, the same ones a scan picks ---------------------------------------------


def _table(ddb, name: str) -> None:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])


def _scans(aws) -> list[str]:
    """The tables scanned through the product's DynamoDB client from now on."""
    seen: list[str] = []
    aws.client("dynamodb").meta.events.register("before-call.dynamodb.Scan",
                                                lambda params, **_: seen.append(params["TableName"]))
    return seen


def test_the_counter_step_picks_by_key_the_residents_a_scan_of_the_register_picks(in_process_aws):
    from infra.config import load_deployment
    from infra.naming import Names
    from jukinet_ops.card_demo import active_residents

    deployment = load_deployment("nagano-demo")
    table = Names.of(deployment).card_table(deployment.prefectures[0].code)
    ddb = in_process_aws.client("dynamodb")
    _table(ddb, table)
    register = {  # code: (municipality, ended, reason)
        "00000000019": ("202011", "", "01"), "00000000027": ("202011", "", "21"),  # moved out: not living there
        "00000000035": ("202011", "2003-01-09", "01"), "00000000043": ("202029", "", "01"),  # ended; elsewhere
        "00000000051": ("202011", "", "03"), "00000000060": ("202011", "", "01"), "00000000078": ("202011", "", "01"),
    }
    for code, (muni, ended, reason) in register.items():
        ddb.put_item(TableName=table, Item={"pk": {"S": f"RESIDENT#{code}"}, "sk": {"S": "REGISTER"},
                                           "municipality": {"S": muni}, "ended": {"S": ended}, "reason": {"S": reason}})
        ddb.put_item(TableName=table, Item={"pk": {"S": f"RESIDENT#{code}"}, "sk": {"S": "CARD"},
                                           "municipality": {"S": muni}, "ended": {"S": ""}, "reason": {"S": "01"}})
    scanned = active_residents(deployment, "202011", 3)
    scans = _scans(in_process_aws)
    named = [*register, "00000000086"]  # one the register does not know
    by_key = active_residents(deployment, "202011", 3, reversed(named))
    assert by_key == scanned == ["00000000019", "00000000051", "00000000060"]
    assert scans == []
    assert active_residents(deployment, "202029", 5, named) == ["00000000043"]
    assert active_residents(deployment, "202011", 5, []) == []


def test_the_agencies_residents_are_active_ones_of_the_month_read_by_key(in_process_aws):
    from infra.config import load_deployment
    from infra.naming import NATIONAL, Names
    from jukinet_ops.agency_traffic import active_among, active_codes

    deployment = load_deployment("nagano-demo")
    table = Names.of(deployment).identity_table(NATIONAL)
    ddb = in_process_aws.client("dynamodb")
    _table(ddb, table)
    codes = [f"{i:011d}" for i in range(250)]
    for i, code in enumerate(codes):
        status = "deleted" if i % 5 == 0 else "active"
        ddb.put_item(TableName=table, Item={"pk": {"S": f"R#{code}"}, "sk": {"S": "CURRENT"}, "status": {"S": status}})
        ddb.put_item(TableName=table, Item={"pk": {"S": f"R#{code}"}, "sk": {"S": "H#0001"}, "status": {"S": "active"}})
    active = {c for i, c in enumerate(codes) if i % 5}
    assert set(active_codes(deployment, 1000)) == active  # what the scan finds
    scans = _scans(in_process_aws)
    candidates = ["99999999999", *reversed(codes), codes[1]]  # unknown, duplicated: skipped
    picked = active_among(deployment, candidates, 150)
    assert picked == [c for c in reversed(codes) if c in active][:150]
    assert set(active_among(deployment, candidates, 1000)) == active
    assert scans == []


def test_the_month_knows_whom_its_notices_named_in_each_municipality():
    from jukinet_ops.demo_data import generate_month

    month = generate_month({"202011": "長野市", "202029": "松本市"}, notices=300, seed=5)
    named = set().union(*month.named_by.values())
    assert set(month.residents) <= named
    text = b"".join(data for files in month.files.values() for _, data in files).decode("utf-8", "replace")
    for muni, codes in month.named_by.items():
        assert all(code in text for code in codes)
        assert set(codes) <= named and muni in {"202011", "202029"}


# -- the synth cache --------------------------------------------------------------------------------


def _checkout(root: Path) -> None:
    for name, text in {"app.py": "app", "cdk.json": "{}", "pyproject.toml": "[project]", "package.json": "{}",
                       "package-lock.json": "{}", "infra/stacks/a.py": "a", "lambdas/jukinet/b.py": "b",
                       "data/municipalities.csv": "c", "jukinet_ops/synth.py": "s"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("changed", ["app.py", "cdk.json", "pyproject.toml", "package.json", "package-lock.json",
                                     "infra/stacks/a.py", "infra/stacks/new.py", "lambdas/jukinet/b.py",
                                     "data/municipalities.csv", "data/agencies.toml", "jukinet_ops/synth.py"])
def test_a_change_to_any_file_synthesis_reads_changes_the_key(tmp_path, changed):
    from jukinet_ops.synth import synth_inputs_key

    _checkout(tmp_path)
    day = dt.date(2003, 1, 31)
    before = synth_inputs_key("nagano-demo", day, root=tmp_path)
    assert synth_inputs_key("nagano-demo", day, root=tmp_path) == before
    (tmp_path / changed).write_text("changed")
    assert synth_inputs_key("nagano-demo", day, root=tmp_path) != before


def test_the_key_follows_the_deployment_the_day_the_versions_and_the_environment(tmp_path, monkeypatch):
    import importlib.metadata

    from jukinet_ops import synth

    _checkout(tmp_path)
    day = dt.date(2003, 1, 31)
    key = synth.synth_inputs_key("nagano-demo", day, root=tmp_path)
    assert synth.synth_inputs_key("nagano-compact", day, root=tmp_path) != key
    assert synth.synth_inputs_key("nagano-demo", day + dt.timedelta(days=1), root=tmp_path) != key
    # Compiled files are not inputs.
    (tmp_path / "infra" / "stacks" / "__pycache__").mkdir()
    (tmp_path / "infra" / "stacks" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"x")
    assert synth.synth_inputs_key("nagano-demo", day, root=tmp_path) == key
    monkeypatch.setenv("CDK_DEFAULT_REGION", "us-east-1")
    assert synth.synth_inputs_key("nagano-demo", day, root=tmp_path) != key
    monkeypatch.delenv("CDK_DEFAULT_REGION")
    monkeypatch.setattr(synth, "_node_version", lambda root: "v99.0.0")
    assert synth.synth_inputs_key("nagano-demo", day, root=tmp_path) != key
    monkeypatch.undo()

    class Upgraded:  # aws-cdk-lib upgraded, nothing else
        metadata = {"Name": "aws-cdk-lib"}
        version = "99.0.0"

    installed = list(importlib.metadata.distributions())
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda: [d for d in installed if d.metadata["Name"] != "aws-cdk-lib"] + [Upgraded()])
    assert synth.synth_inputs_key("nagano-demo", day, root=tmp_path) != key


def test_the_assembly_is_reused_only_while_its_inputs_are_unchanged(tmp_path, monkeypatch):
    from jukinet_ops import synth

    _checkout(tmp_path)
    runs: list[Path] = []

    def fake_synth(deployment, out, *, today=None):
        runs.append(Path(out))
        if deployment == "broken":
            raise RuntimeError("cdk synth failed")
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "manifest.json").write_text("{}")
        return Path(out)

    monkeypatch.setattr(synth, "synth", fake_synth)
    out = tmp_path / "cdk.out"
    day = dt.date(2003, 1, 31)

    def cached(deployment: str = "nagano-demo", today: dt.date = day) -> tuple[Path, bool]:
        return synth.synth_cached(deployment, out, today=today, root=tmp_path)

    assert cached() == (out.resolve(), False)
    assert cached() == (out.resolve(), True)
    assert len(runs) == 1
    (tmp_path / "lambdas" / "jukinet" / "b.py").write_text("a fix")
    assert cached() == (out.resolve(), False)
    assert cached(today=day + dt.timedelta(days=1))[1] is False
    assert len(runs) == 3
    assert cached(today=day + dt.timedelta(days=1))[1] is True
    # A failed synthesis leaves nothing to reuse, even for the inputs that synthesized before.
    with pytest.raises(RuntimeError):
        cached("broken")
    assert cached(today=day + dt.timedelta(days=1))[1] is False
    # An assembly without its manifest is not reused.
    os.remove(out / "manifest.json")
    assert cached(today=day + dt.timedelta(days=1))[1] is False
    assert len(runs) == 6


def test_any_synthesis_into_the_directory_voids_the_stamp(tmp_path, monkeypatch):
    """``jukinet up`` (and ``jukinet synth --out``) synthesize into the demo's directory with
    their own deployment and day: the demo must not take that assembly for its own."""
    import subprocess

    from jukinet_ops import synth

    out = tmp_path / "cdk.out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / synth.SYNTH_KEY_FILE).write_text("a key\n")
    monkeypatch.setattr(synth.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    synth.synth("nagano-compact", out)
    assert not (out / synth.SYNTH_KEY_FILE).exists()


def test_the_cli_passes_resynth_and_step_one_says_when_the_assembly_was_reused(monkeypatch):
    import io

    import jukinet_ops.demo
    from jukinet_ops.cli import main
    from jukinet_ops.demo_report import DemoConsole, DemoOutput

    seen: dict = {}
    monkeypatch.setattr(jukinet_ops.demo, "run_demo", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["demo", "--resynth"]) == 0 and seen["resynth"] is True
    assert main(["demo"]) == 0 and seen["resynth"] is False

    def step_one(**kwargs) -> str:
        text = io.StringIO()
        DemoOutput(DemoConsole(file=text)).assembly(".jukinet/cdk.out", 3.0, **kwargs)
        return text.getvalue()

    assert "reused" in step_one(reused=True) and "--resynth" in step_one(reused=True)
    assert "reused" not in step_one()
