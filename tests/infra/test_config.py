"""The deployment configuration: validated once, refusing what would fail at deploy time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path

import pytest

from infra.config import (
    DATA_DIR,
    ConfigError,
    Deployment,
    Environment,
    Municipality,
    MunicipalityTier,
    Network,
    Operations,
    load_deployment,
    load_people,
    multi_account_example,
    nagano_demo,
    synthetic_municipalities,
)
from infra.naming import Names, prefecture_tier
from jukinet.domain.codes import LocalGovernmentCode

AZS = ("ap-northeast-1a", "ap-northeast-1c")


def test_nagano_demo_has_77_municipalities_with_valid_codes_in_one_account() -> None:
    d = load_deployment("nagano-demo")
    [nagano] = d.prefectures
    assert nagano.code == "200000"
    codes = [m.code for m in nagano.municipality_tier.municipalities]
    assert len(codes) == 77 == len(set(codes))
    assert all(LocalGovernmentCode.parse(c).prefecture_number == "20" for c in codes)
    assert "202011" in codes and nagano.municipality_tier.municipalities[0].name == "長野市"
    assert d.accounts() == ("123456789012",)
    assert d.region == "ap-northeast-1"


def test_default_deployment_is_nagano_demo_and_unknown_names_are_refused() -> None:
    assert load_deployment(None).name == "nagano-demo"
    with pytest.raises(ConfigError, match="unknown deployment 'tokyo'"):
        load_deployment("tokyo")


def test_a_wrong_check_digit_is_refused_with_the_expected_digit() -> None:
    with pytest.raises(ConfigError, match="check digit must be 1"):
        Municipality("202012", "長野市")


def test_a_prefecture_code_is_not_a_municipality() -> None:
    with pytest.raises(ConfigError, match="prefecture-level"):
        Municipality("200000", "長野県")


def test_a_municipality_of_another_prefecture_is_refused() -> None:
    d = nagano_demo()
    tier = d.prefectures[0].municipality_tier
    with pytest.raises(ConfigError, match="do not belong to prefecture 200000"):
        dataclasses.replace(d.prefectures[0], municipality_tier=dataclasses.replace(
            tier, municipalities=(*tier.municipalities, Municipality("131016", "千代田区"))))


def test_a_municipality_tier_in_another_account_needs_its_endpoint_id_and_says_so() -> None:
    d = nagano_demo()
    pref = d.prefectures[0]
    elsewhere = dataclasses.replace(pref.municipality_tier, env=Environment("333333333333", "ap-northeast-1"))
    with pytest.raises(ConfigError, match=r"municipality_tier\.sqs_endpoint_id"):
        dataclasses.replace(pref, municipality_tier=elsewhere)


def test_a_prefecture_in_another_account_needs_its_endpoint_id_for_the_national_queue() -> None:
    d = nagano_demo()
    other = Environment("222222222222", "ap-northeast-1")
    moved = dataclasses.replace(d.prefectures[0], env=other,
                                municipality_tier=dataclasses.replace(d.prefectures[0].municipality_tier, env=other))
    with pytest.raises(ConfigError, match="set its sqs_endpoint_id"):
        dataclasses.replace(d, prefectures=(moved,))


def test_tiers_in_different_regions_are_refused() -> None:
    d = nagano_demo()
    national = dataclasses.replace(d.national, env=Environment("123456789012", "ap-northeast-3"),
                                   network=Network("10.0.0.0/22", ("ap-northeast-3a", "ap-northeast-3b")))
    with pytest.raises(ConfigError, match="one region"):
        dataclasses.replace(d, national=national)


def test_overlapping_vpc_cidrs_are_refused() -> None:
    d = nagano_demo()
    with pytest.raises(ConfigError, match="overlap"):
        dataclasses.replace(d, national=dataclasses.replace(d.national, network=Network("10.20.0.0/22", AZS)))


def test_a_network_needs_two_zones() -> None:
    with pytest.raises(ConfigError, match="two availability zones"):
        Network("10.0.0.0/22", ("ap-northeast-1a",))


def test_stack_groups_must_cover_every_municipality_once() -> None:
    tier = nagano_demo().prefectures[0].municipality_tier
    codes = [m.code for m in tier.municipalities]
    pinned = dataclasses.replace(tier, stack_groups=(tuple(codes[:37]), tuple(codes[37:])))
    assert [len(g) for g in pinned.groups()] == [37, 40]
    with pytest.raises(ConfigError, match="exactly once"):
        dataclasses.replace(tier, stack_groups=(tuple(codes[:30]),))


def test_default_groups_chunk_in_code_order() -> None:
    tier = MunicipalityTier(env=Environment("123456789012", "ap-northeast-1"), network=Network("10.1.4.0/22", AZS),
                            municipalities=synthetic_municipalities("01", 179))
    groups = tier.groups()
    assert [len(g) for g in groups] == [40, 40, 40, 40, 19]
    flat = [m.code for g in groups for m in g]
    assert flat == sorted(flat)


def test_the_large_test_deployment_has_a_179_municipality_prefecture() -> None:
    d = load_deployment("large-prefecture-test")
    sizes = {p.code: len(p.municipality_tier.municipalities) for p in d.prefectures}
    assert sizes == {"010006": 179, "200000": 77}


def test_all_prefectures_must_share_one_account() -> None:
    d = load_deployment("large-prefecture-test")
    hokkaido = d.prefectures[0]
    other = Environment("444444444444", "ap-northeast-1")
    moved = dataclasses.replace(hokkaido, env=other, sqs_endpoint_id="vpce-0a1b2c3d4e5f60009",
                                municipality_tier=dataclasses.replace(hokkaido.municipality_tier, env=other))
    with pytest.raises(ConfigError, match="share one account"):
        dataclasses.replace(d, prefectures=(moved, d.prefectures[1]))


def test_demo_agencies_are_marked_demo_and_minimise_fields_per_affair() -> None:
    agencies = {a.recipient_id: a for a in nagano_demo().agencies}
    assert set(agencies) == {"chikyosai", "mhlw-engo", "nenkin", "fsa", "nagano-pref"}
    assert tomllib.loads((DATA_DIR / "agencies.demo.toml").read_text(encoding="utf-8"))["demo_data"] is True
    alive = next(g for g in agencies["nenkin"].agreements if "ALIVE" in g.affair_code)
    assert "address" not in alive.fields and {"status", "change_information"} <= alive.fields
    assert alive.is_valid_on(dt.date(2026, 1, 1))
    national_bodies = [a for a in agencies.values() if a.kind == "agency"]
    assert all(g.appended_table.startswith("別表") for a in national_bodies for g in a.agreements)
    # The prefecture's own use: 別表第五, or an ordinance (住基法第30条の15第2項).
    own_use = agencies["nagano-pref"]
    assert own_use.kind == "prefecture" and own_use.prefecture == "200000" and not own_use.vpc_endpoint_ids
    assert all(g.functions == {"own_use"} for g in own_use.agreements)
    assert {g.appended_table for g in own_use.agreements} == {"別表第五", "条例 (住基法第30条の15第2項)"}


def test_multi_account_example_names_cross_account_resources_from_config_alone() -> None:
    d = multi_account_example()
    names = Names.of(d)
    pref = d.prefectures[0]
    assert names.queue_url(d.national.env, names.inbound_queue("national")) == \
        "https://sqs.ap-northeast-1.amazonaws.com/111111111111/jukinet-national-inbound"
    assert names.signing_alias_arn_prefix(pref.municipality_tier.env) == \
        "arn:aws:kms:ap-northeast-1:333333333333:alias/jukinet/signing/"
    assert names.role_arn_pattern(pref.env, prefecture_tier(pref.code)) == \
        "arn:aws:iam::222222222222:role/jukinet/pref-200000/*"


def test_bucket_names_stay_within_s3_limits() -> None:
    d = nagano_demo()
    env = d.prefectures[0].municipality_tier.env
    assert len(Names("jukinet").drop_zone_bucket(env, "202011")) <= 63
    with pytest.raises(ConfigError):
        Deployment(name="x", national=d.national, prefectures=d.prefectures, prefix="a-very-long-prefix")


@pytest.mark.parametrize("url", ["http://chat.example.jp/hook", "chat.example.jp/hook", "https://", "https://a b/c"])
def test_an_alarm_chat_url_must_be_https_and_names_the_field(url: str) -> None:
    with pytest.raises(ConfigError, match="alarm_chat_url"):
        Operations(alarm_chat_url=url)


def test_an_https_alarm_chat_url_is_accepted() -> None:
    assert Operations(alarm_chat_url="https://chat.example.jp/hooks/jukinet").alarm_chat_url


# --- data/operators.*.toml: validated by pydantic models (extra="forbid"), then the dataclasses' rules ---

DEMO_PEOPLE = (DATA_DIR / "operators.demo.toml").read_text(encoding="utf-8")


def _people_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operators.test.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_people_load_as_before() -> None:
    people = load_people(DATA_DIR / "operators.demo.toml")
    assert people.demo_data is True
    takahashi = people.person("takahashi")
    assert takahashi.principal == "arn:aws:iam::123456789012:user/jukinet-demo-people/takahashi"
    assert all(isinstance(a.since, dt.date) for a in people.assignments)
    assert all(isinstance(c.people, tuple) for c in people.contracts) and people.contracts


@pytest.mark.parametrize(("edit", "message"), [
    (("demo_data = true", "demo_data = true\ndemo = 1"), "operators.test.toml: demo: unknown field"),
    (('id = "takahashi"', 'id = "takahashi"\nnick = "t"'), "operators.test.toml: person 'takahashi': nick: unknown field"),
    (('name = "高橋 一郎 (demo)"\n', ""), "operators.test.toml: person 'takahashi': name: Field required"),
    (('id = "takahashi"', "id = 7"), "operators.test.toml: person 7: id: Input should be a valid string"),
    (("since = 2025-04-01", 'since = "2025-04-01"'),
     r"operators.test.toml: assignment of '\w+': since: must be a date \(YYYY-MM-DD, unquoted\)"),
    (("user/jukinet-demo-people/takahashi", "root"),
     "operators.test.toml: person 'takahashi': principal .* \\(an account root names no person\\)"),
])
def test_a_bad_people_file_is_refused_naming_the_file_the_table_the_field_and_the_rule(
        tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in DEMO_PEOPLE
    with pytest.raises(ConfigError, match=message):
        load_people(_people_file(tmp_path, DEMO_PEOPLE.replace(old, new, 1)))


def test_a_contract_field_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    text = DEMO_PEOPLE + '\n[[contract]]\nid = "x1"\ncompany = "c"\ntier = "national"\npeople = "takahashi"\n' \
                         "since = 2026-01-01\nexpires = 2026-06-01\n"
    with pytest.raises(ConfigError, match="operators.test.toml: contract 'x1': people: Input should be a valid list"):
        load_people(_people_file(tmp_path, text))
