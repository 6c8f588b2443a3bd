"""``jukinet verify``, ``jukinet disclose`` and ``jukinet provision-stats`` through the CLI entry
point, against the moto-backed provision world (tests/provision/world.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from infra import config
from infra.config import Deployment
from jukinet.clock import fixed
from jukinet.domain.agreements import Recipient
from jukinet_ops.cli import build_parser, main
from jukinet_ops.provision import StatsRow, stats_rows
from tests.provision import conftest as provision_conftest
from tests.provision.world import AGREEMENTS, ENDPOINTS

world = provision_conftest.world  # the moto world fixture, shared with tests/provision

DAY = "2026-11-26"  # the world's clock: 2026-11-26 12:00 JST
NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)  # the commands' clock: the world's
DEPLOYMENT = "provision-world"


def _agencies() -> tuple[Recipient, ...]:
    """The world's recipients as deployment configuration: the same model reads the file."""
    return tuple(Recipient.model_validate(r) for r in AGREEMENTS["recipients"])


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # rich: no column is cut short


@pytest.fixture
def deployment(monkeypatch):
    """A deployment whose recipients are the world's (prefix ``jukinet``: the world's table names)."""
    demo = config.nagano_demo()
    made = Deployment(name=DEPLOYMENT, national=demo.national, prefectures=demo.prefectures, agencies=_agencies())
    monkeypatch.setitem(config.DEPLOYMENTS, DEPLOYMENT, lambda: made)
    return made


@pytest.fixture
def provided(world, deployment) -> list[str]:
    """Look-ups: pension PAY ×2 and ALIVE ×1 for 3 residents, fsa BANK for 2, the prefecture's own
    use (PASSPORT) for 1 — 3×3 + 2 + 1 = 12 records."""
    codes = [r.code for r in world.add_residents(3, seed=11)]
    calls = [("pension", "PAY", codes), ("pension", "ALIVE", codes), ("pension", "PAY", codes),
             ("fsa", "BANK", codes[:2]), ("pref-own-use", "PASSPORT", codes[:1])]
    for who, affair, asked in calls:
        status, body = world.call("POST", "/v1/lookups", {"affair_code": affair, "resident_codes": asked}, who=who,
                                  vpce=ENDPOINTS["pref"] if who == "pref-own-use" else None)
        assert status == 200, body
    return codes


def run(capsys, *argv: str, now: dt.datetime = NOW) -> tuple[int, str, str]:
    capsys.readouterr()  # forget what the world printed (the handlers' logs)
    code = main([*argv, "--deployment", DEPLOYMENT], clock=fixed(now))
    out, err = capsys.readouterr()
    return code, out, err


def edit_recipient(world, code: str, n: int) -> None:
    key = {"pk": {"S": f"P#{code}"}, "sk": {"S": f"E#{n:08d}"}}
    item = world.ddb.get_item(TableName=world.log_table, Key=key)["Item"]
    content = {**json.loads(item["content"]["S"]), "recipient_id": "fsa", "recipient_name": "金融庁"}
    world.ddb.put_item(TableName=world.log_table,
                       Item={**item, "content": {"S": json.dumps(content, sort_keys=True, ensure_ascii=False)}})


# --- the surface -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["verify", "disclose", "provision-stats"])
def test_every_provision_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: jukinet " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["verify", "--day", "2026-11-31"], "date must be YYYY-MM-DD"),
    (["verify", "--resident", "12345678901"], "check digit"),
    (["disclose", "123"], "resident code '123'"),
    (["provision-stats", "--month", "2026-13"], "month must be YYYY-MM"),
    (["provision-stats", "--format", "xml"], "invalid choice"),
])
def test_arguments_are_checked_before_any_aws_call(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _args(*argv: str, now: dt.datetime):
    args = build_parser(now).parse_args(list(argv))
    args.now = now
    return args


def test_verify_defaults_to_the_last_seven_days_in_japan_time():
    from jukinet_ops.cli import _verify_days

    # 2026-03-01 23:30 UTC is already 2026-03-02 in Japan.
    now = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)
    args = _args("verify", now=now)
    assert _verify_days(args) == ["2026-02-24", "2026-02-25", "2026-02-26", "2026-02-27", "2026-02-28",
                                  "2026-03-01", "2026-03-02"]
    args = _args("verify", "--to", "2026-01-03", "--day", "2025-12-01", now=now)
    assert _verify_days(args)[0] == "2025-12-01" and _verify_days(args)[1:] == [
        f"2025-12-{d}" for d in range(28, 32)] + ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert _verify_days(_args("verify", "--resident", "50000000016", now=now)) == []


def test_verify_refuses_a_reversed_range(world, deployment, capsys):
    code, _, err = run(capsys, "verify", "--from", "2026-11-26", "--to", "2026-11-25")
    assert code == 2 and "after" in err


# --- verify ----------------------------------------------------------------------------


def test_verify_a_day_not_sealed_yet_checks_its_chains(world, provided, capsys):
    code, out, _ = run(capsys, "verify")  # the default: the 7 days up to today
    assert code == 0, out
    assert "2026-11-20" in out and DAY in out
    assert "not sealed yet; 3 chain(s) verified" in out
    assert "No problem: 7 day(s), 3 chain(s) checked." in out


def test_verify_a_sealed_day_with_the_key_from_kms(world, provided, capsys):
    world.seal(DAY)
    code, out, _ = run(capsys, "verify", "--day", DAY)
    assert code == 0, out
    assert "verified against the seal" in out and "12" in out


def test_verify_names_each_tampered_entry_and_exits_1(world, provided, capsys):
    world.seal(DAY)
    edit_recipient(world, provided[1], 2)
    code, out, _ = run(capsys, "verify", "--day", DAY)
    assert code == 1
    assert f"{provided[1]}#00000002: edited: differs from the entry sealed on {DAY}" in out
    assert "1 problem(s)" in out


def test_verify_as_json(world, provided, capsys):
    edit_recipient(world, provided[0], 1)
    code, out, _ = run(capsys, "verify", "--day", DAY, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["problems"] == [{"where": f"{provided[0]}#00000001", "kind": "edited",
                                "detail": "the content does not match the entry's hash"}]
    assert doc["days"][0]["sealed"] is False and doc["days"][0]["entries"] == 12


def test_verify_residents_chains_alone(world, provided, capsys):
    code, out, _ = run(capsys, "verify", "--resident", provided[0], "--resident", provided[2])
    assert code == 0, out
    assert f"resident {provided[0]}" in out and "chain verified" in out
    key = {"pk": {"S": f"P#{provided[2]}"}, "sk": {"S": "E#00000002"}}
    world.ddb.delete_item(TableName=world.log_table, Key=key)
    code, out, _ = run(capsys, "verify", "--resident", provided[2])
    assert code == 1
    assert f"{provided[2]}#00000002: removed: no entry at this position of the chain" in out


@pytest.mark.parametrize("encoding", [Encoding.PEM, Encoding.DER])
def test_verify_with_the_auditors_copy_of_the_public_key(world, provided, capsys, tmp_path, encoding):
    world.seal(DAY)
    der = world.kms.get_public_key(KeyId=world.seal_key)["PublicKey"]
    key_file = tmp_path / "seal-key"
    key_file.write_bytes(load_der_public_key(der).public_bytes(encoding, PublicFormat.SubjectPublicKeyInfo))
    code, out, _ = run(capsys, "verify", "--day", DAY, "--public-key", str(key_file))
    assert code == 0, out

    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    key_file.write_bytes(stranger.public_bytes(encoding, PublicFormat.SubjectPublicKeyInfo))
    code, out, _ = run(capsys, "verify", "--day", DAY, "--public-key", str(key_file))
    assert code == 1
    assert f"{DAY}T00: seal_invalid: the seal's signature does not verify with the deployment's key" in out


# --- disclose --------------------------------------------------------------------------


def test_disclose_lists_every_provision_with_the_chain_check(world, provided, capsys):
    code, out, _ = run(capsys, "disclose", provided[0])
    assert code == 0, out
    assert out.count(DAY) >= 5  # five provisions, each dated
    for text in ["年金機関", "金融庁", "長野県", "PAY affair PAY", "照会 (lookup)", "都道府県の利用 (own_use)",
                 "change_information, resident_code, status", "national", "200000", "5 provision(s)."]:
        assert text in out, text
    assert f"chain of {provided[0]}: 5 entries, verified against the seals; not sealed yet: {DAY}" in out


def test_disclose_as_json_and_within_dates(world, provided, capsys):
    code, out, _ = run(capsys, "disclose", provided[2], "--format", "json", "--from", DAY, "--to", DAY)
    assert code == 0
    doc = json.loads(out)
    assert doc["resident_code"] == provided[2] and doc["chain"]["verified"] is True
    assert [(p["recipient_id"], p["affair_code"], p["function"]) for p in doc["provisions"]] == [
        ("pension", "PAY", "lookup"), ("pension", "ALIVE", "lookup"), ("pension", "PAY", "lookup")]
    code, out, _ = run(capsys, "disclose", provided[2], "--format", "json", "--to", "2026-11-25")
    assert code == 0 and json.loads(out)["provisions"] == []


def test_disclose_exits_1_when_the_chain_does_not_verify(world, provided, capsys):
    edit_recipient(world, provided[0], 2)
    code, out, _ = run(capsys, "disclose", provided[0])
    assert code == 1
    assert f"chain of {provided[0]}: 5 entries, NOT verified (1 problem(s))" in out
    assert f"{provided[0]}#00000002: edited: the content does not match the entry's hash" in out


# --- provision-stats -------------------------------------------------------------------


def test_stats_rows_are_per_recipient_affair_and_function_with_a_total():
    agencies = _agencies()
    counts = {("pref", "PASSPORT", "own_use"): 4, ("pension", "PAY", "lookup"): 7, ("pension", "ALIVE", "batch"): 2_000_000,
              ("pension", "ALIVE", "lookup"): 0, ("gone", "OLD", "lookup"): 1, ("fsa", "RETIRED", "search"): 3}
    rows = stats_rows(counts, agencies)
    assert rows == [
        StatsRow("pension", "年金機関", "Pension body", "ALIVE", "affair ALIVE", "batch", 2_000_000),
        StatsRow("pension", "年金機関", "Pension body", "PAY", "affair PAY", "lookup", 7),
        StatsRow("fsa", "金融庁", "FSA", "RETIRED", "", "search", 3),  # an agreement no longer configured
        StatsRow("pref", "長野県", "Prefecture (own use)", "PASSPORT", "affair PASSPORT", "own_use", 4),
        StatsRow("gone", "", "", "OLD", "", "lookup", 1),  # a recipient no longer configured
        StatsRow("", "合計", "total", "", "", "", 2_000_015),
    ]
    assert rows[0].function_label == "一括提供" and rows[-1].is_total and rows[-1].function_label == ""
    assert stats_rows({}, agencies) == [StatsRow("", "合計", "total", "", "", "", 0)]


def test_provision_stats_table(world, provided, capsys):
    code, out, _ = run(capsys, "provision-stats", "--month", "2026-11")
    assert code == 0
    lines = [line for line in out.splitlines() if "│" in line]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines]
    assert cells == [
        ["年金機関", "Pension body", "ALIVE affair ALIVE", "照会 (lookup)", "3"],
        ["年金機関", "Pension body", "PAY affair PAY", "照会 (lookup)", "6"],
        ["金融庁", "FSA", "BANK affair BANK", "照会 (lookup)", "2"],
        ["長野県", "Prefecture (own use)", "PASSPORT affair PASSPORT", "都道府県の利用 (own_use)", "1"],
        ["合計", "total", "", "", "12"],
    ]


def test_provision_stats_csv_and_json(world, provided, capsys):
    code, out, _ = run(capsys, "provision-stats", "--month", "2026-11", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["recipient_id"], r["affair_code"], r["function"], r["records"]) for r in rows] == [
        ("pension", "ALIVE", "lookup", "3"), ("pension", "PAY", "lookup", "6"), ("fsa", "BANK", "lookup", "2"),
        ("pref", "PASSPORT", "own_use", "1"), ("", "", "", "12")]
    assert rows[-1]["name_ja"] == "合計" and {r["month"] for r in rows} == {"2026-11"}

    code, out, _ = run(capsys, "provision-stats", "--month", "2026-11", "--format", "json")
    doc = json.loads(out)
    assert doc["total"] == 12 and len(doc["rows"]) == 4
    assert doc["rows"][3] == {"recipient_id": "pref", "name_ja": "長野県", "name": "Prefecture (own use)",
                              "affair_code": "PASSPORT", "affair": "affair PASSPORT", "function": "own_use",
                              "function_label": "都道府県の利用", "records": 1}


def test_provision_stats_per_prefecture_in_the_seeds_table_shape(world, provided, capsys):
    code, out, _ = run(capsys, "provision-stats", "--month", "2026-11", "--by", "prefecture", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["prefecture"], r["prefecture_name"], r["recipient_id"], r["month"], r["records"]) for r in rows] == [
        ("200000", "長野県", "pension", "2026-11", "9"), ("200000", "長野県", "fsa", "2026-11", "2"),
        ("200000", "長野県", "pref", "2026-11", "1"), ("", "合計", "", "2026-11", "12")]


def test_provision_stats_check_compares_the_counters_with_the_log(world, provided, capsys):
    code, _, err = run(capsys, "provision-stats", "--month", "2026-11", "--check", "--format", "csv")
    assert code == 0 and "equal the log: 12 provision(s)" in err
    world.ddb.update_item(TableName=world.state_table, Key={"pk": {"S": "STAT#2026-11"}, "sk": {"S": "fsa"}},
                          UpdateExpression="ADD #c :n", ExpressionAttributeNames={"#c": "c#BANK#lookup"},
                          ExpressionAttributeValues={":n": {"N": "-2"}})  # an insider hides fsa's look-ups
    code, _, err = run(capsys, "provision-stats", "--month", "2026-11", "--check", "--format", "csv")
    assert code == 1 and "fsa BANK/lookup: counted 0, log holds 2" in err


def test_provision_stats_of_a_month_without_provisions(world, provided, capsys):
    code, out, _ = run(capsys, "provision-stats", "--month", "2026-10", "--format", "json")
    assert code == 0 and json.loads(out) == {"month": "2026-10", "rows": [], "total": 0}


def test_verify_pins_the_configured_seal_key_not_the_one_a_seal_names(world, provided, capsys):
    """Issue 12 item 1: a seal re-signed with the attacker's own KMS key, whose ARN is written
    into the seal, verified — the key was taken from the data. Now the key is the one the
    configuration names (its alias), or the published copy given with --public-key."""
    from jukinet.domain.provision import seal_message

    world.seal(DAY)
    key = {"pk": {"S": "SEALS"}, "sk": {"S": f"{DAY}T00"}}
    item = world.ddb.get_item(TableName=world.log_table, Key=key)["Item"]
    own = world.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    message = seal_message(f"{DAY}T00", int(item["count"]["N"]), item["digest"]["S"], item["prev"]["S"])
    forged = world.kms.sign(KeyId=own, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    world.ddb.put_item(TableName=world.log_table, Item={**item, "signature": {"B": forged["Signature"]},
                                                        "key_id": {"S": own}})
    code, out, _ = run(capsys, "verify", "--day", DAY)
    assert code == 1
    assert f"{DAY}T00: seal_invalid: the seal's signature does not verify with the deployment's key" in out
