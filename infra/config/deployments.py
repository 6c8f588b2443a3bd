"""The deployment configuration: one typed, validated object chosen by ``-c deployment=<name>``.

Everything that differs between deployments lives here (accounts, regions, AZs, CIDRs,
prefectures and their municipalities, agencies and their agreements, alarm recipients);
stacks read nothing else. Loading is pure: no AWS call, no network, no credentials, so
``cdk synth`` works offline.

Registered deployments (``DEPLOYMENTS``):

``nagano-demo``
    Nagano prefecture (200000) with its 77 municipalities (``data/nagano_municipalities.csv``),
    every tier in the placeholder account 123456789012, ap-northeast-1. What the demo and
    the embedded AWS deploy.
``nagano-compact``
    ``nagano-demo`` with 8 of Nagano's municipalities (長野市, 松本市, 上田市, 岡谷市, 飯田市,
    諏訪市, 須坂市, 小諸市): the same stacks, settings, agencies and people, a quarter of the
    resources. What the embedded-AWS tests deploy (a deployment in seconds, not half a minute);
    what does not depend on the number of municipalities is tested there.
``two-prefectures-compact``
    ``nagano-compact`` with a second prefecture, 東京都 (130001), of two municipalities (千代田区,
    中央区): what the embedded-AWS tests of the channel across prefectures deploy (a card of 長野県
    authenticated at 千代田区's counter, decision 0050).
``large-prefecture-test``
    A synthetic 179-municipality prefecture (Hokkaido's count) beside Nagano: proves that
    the stack split keeps every stack under CloudFormation's 500-resource limit.
``multi-account-example``
    Each tier in its own account: shows the values that then must come from configuration
    (the sending tiers' SQS endpoint ids, the prefecture's execute-api endpoint id), and the
    one audit trail per account.
"""

from __future__ import annotations

import csv
import dataclasses
import sysconfig
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import ValidationError as PydanticValidationError

from jukinet.domain.agreements import Recipient
from jukinet.domain.codes import LocalGovernmentCode

from .base import ConfigError, _model_errors, _require
from .deployment import Deployment
from .environment import Environment, Network
from .operations import Operations
from .people import load_people
from .tiers import Municipality, MunicipalityTier, National, Prefecture

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _data_dir() -> Path:
    """``data/`` of this checkout; installed from a wheel, the copy pyproject.toml's data-files
    put under ``<prefix>/share/jukinet/data``."""
    checkout = REPO_ROOT / "data"
    installed = Path(sysconfig.get_path("data")) / "share" / "jukinet" / "data"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


DATA_DIR = _data_dir()
DEFAULT_DEPLOYMENT = "nagano-demo"


def load_municipalities(path: Path) -> tuple[Municipality, ...]:
    """Read ``local_government_code,name,name_kana`` rows; every code's check digit is verified."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    _require(len(rows) > 0, f"{path}: no municipalities")
    return tuple(Municipality(r["local_government_code"].strip(), r["name"].strip(), r.get("name_kana", "").strip())
                 for r in rows)


def _known_keys(table: dict, known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    _require(not unknown, f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")


def load_agencies(path: Path) -> tuple[Recipient, ...]:
    """Recipients and agreements from a TOML file: changing an agreement is a data change. Each
    ``[[agency]]`` table (with its ``[[agency.agreement]]`` tables) is validated by the runtime's
    model (``jukinet.domain.agreements.Recipient``); an unknown key or a broken rule is refused
    with the file, the agency, the field and the rule."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    _known_keys(doc, frozenset({"demo_data", "agency"}), path.name)
    agencies = []
    for table in doc.get("agency", []):
        try:
            agencies.append(Recipient.model_validate(table))
        except PydanticValidationError as exc:
            raise ConfigError(f"{path.name}: agency {table.get('id')!r}: {_model_errors(exc, table)}") from None
    return tuple(agencies)


DEMO_ACCOUNT = "123456789012"  # placeholder: replace with real accounts before `cdk deploy`
DEMO_REGION = "ap-northeast-1"
DEMO_AZS = ("ap-northeast-1a", "ap-northeast-1c")


def _networks(prefecture_number: int) -> tuple[Network, Network]:
    """Default CIDRs: prefecture tier 10.<pp>.0.0/22, its municipality tier 10.<pp>.4.0/22."""
    return (Network(f"10.{prefecture_number}.0.0/22", DEMO_AZS), Network(f"10.{prefecture_number}.4.0/22", DEMO_AZS))


def _prefecture(code: str, name: str, name_en: str, municipalities: Iterable[Municipality], env: Environment, *,
                muni_env: Environment | None = None, muni_sqs_endpoint_id: str | None = None,
                sqs_endpoint_id: str | None = None, api_endpoint_id: str | None = None,
                upload_cidrs: tuple[str, ...] = ()) -> Prefecture:
    pref_net, muni_net = _networks(int(code[:2]))
    tier = MunicipalityTier(env=muni_env or env, network=muni_net, municipalities=tuple(municipalities),
                            sqs_endpoint_id=muni_sqs_endpoint_id, upload_cidrs=upload_cidrs)
    return Prefecture(code=code, name=name, name_en=name_en, env=env, network=pref_net, municipality_tier=tier,
                      sqs_endpoint_id=sqs_endpoint_id, api_endpoint_id=api_endpoint_id)


def _nagano_municipalities() -> tuple[Municipality, ...]:
    return load_municipalities(DATA_DIR / "nagano_municipalities.csv")


def nagano_demo() -> Deployment:
    env = Environment(DEMO_ACCOUNT, DEMO_REGION)
    return Deployment(
        name="nagano-demo",
        national=National(env=env, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(_prefecture("200000", "長野県", "Nagano", _nagano_municipalities(), env),),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
        people=load_people(DATA_DIR / "operators.demo.toml"),
    )


COMPACT_MUNICIPALITIES = ("202011", "202029", "202037", "202045", "202053", "202061", "202070", "202088")


def nagano_compact() -> Deployment:
    """``nagano-demo`` with the municipalities ``COMPACT_MUNICIPALITIES`` only."""
    demo = nagano_demo()
    [nagano] = demo.prefectures
    tier = nagano.municipality_tier
    kept = tuple(m for m in tier.municipalities if m.code in COMPACT_MUNICIPALITIES)
    _require(len(kept) == len(COMPACT_MUNICIPALITIES), "nagano-compact: a municipality is not in Nagano's list")
    compact = dataclasses.replace(nagano, municipality_tier=dataclasses.replace(tier, municipalities=kept))
    return dataclasses.replace(demo, name="nagano-compact", prefectures=(compact,))


def two_prefectures_compact() -> Deployment:
    """``nagano-compact`` and 東京都 with 千代田区 and 中央区 (the channel across prefectures)."""
    compact = nagano_compact()
    tokyo = _prefecture("130001", "東京都", "Tokyo", (Municipality("131016", "千代田区"), Municipality("131024", "中央区")),
                        compact.national.env)
    return dataclasses.replace(compact, name="two-prefectures-compact", prefectures=(*compact.prefectures, tokyo))


def synthetic_municipalities(prefecture_number: str, count: int) -> tuple[Municipality, ...]:
    """``count`` municipalities with valid codes (<pp>201, <pp>202, … + check digit)."""
    return tuple(
        Municipality(str(LocalGovernmentCode.from_body(f"{prefecture_number}{n:03d}")),
                     f"Synthetic {prefecture_number}{n:03d}")
        for n in range(201, 201 + count)
    )


def large_prefecture_test() -> Deployment:
    """Hokkaido's 179 municipalities (synthetic codes) beside Nagano's 77."""
    demo = nagano_demo()
    env = demo.national.env
    hokkaido = _prefecture("010006", "北海道 (synthetic)", "Hokkaido (synthetic)",
                           synthetic_municipalities("01", 179), env)
    return Deployment(name="large-prefecture-test", national=demo.national, prefectures=(hokkaido, *demo.prefectures),
                      agencies=demo.agencies, people=demo.people)


def multi_account_example() -> Deployment:
    """Each tier in its own account; endpoint ids of the other tiers come from configuration."""
    national = Environment("111111111111", DEMO_REGION)
    prefecture = Environment("222222222222", DEMO_REGION)
    municipalities = Environment("333333333333", DEMO_REGION)
    nagano = _prefecture(
        "200000", "長野県", "Nagano", _nagano_municipalities(), prefecture,
        muni_env=municipalities, sqs_endpoint_id="vpce-0a1b2c3d4e5f60002",
        muni_sqs_endpoint_id="vpce-0a1b2c3d4e5f60003", api_endpoint_id="vpce-0a1b2c3d4e5f60004",
        upload_cidrs=("192.168.20.0/24",),  # the municipalities' LAN, over a site-to-site VPN
    )
    return Deployment(
        name="multi-account-example",
        national=National(env=national, network=Network("10.0.0.0/22", DEMO_AZS)),
        prefectures=(nagano,),
        agencies=load_agencies(DATA_DIR / "agencies.demo.toml"),
        # Prefecture and municipality tiers in different accounts: no channel (Deployment.channel).
        channel=False,
        operations=Operations(alarm_email="jukinet-ops@example.jp",
                              alarm_chat_url="https://chat.example.jp/hooks/jukinet-alarms", guardduty=True),
        people=load_people(DATA_DIR / "operators.demo.toml"),
    )


DEPLOYMENTS: dict[str, Callable[[], Deployment]] = {
    "nagano-demo": nagano_demo,
    "nagano-compact": nagano_compact,
    "two-prefectures-compact": two_prefectures_compact,
    "large-prefecture-test": large_prefecture_test,
    "multi-account-example": multi_account_example,
}


def load_deployment(name: str | None = None) -> Deployment:
    name = name or DEFAULT_DEPLOYMENT
    try:
        factory = DEPLOYMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown deployment {name!r}; known: {', '.join(sorted(DEPLOYMENTS))}") from None
    return factory()
