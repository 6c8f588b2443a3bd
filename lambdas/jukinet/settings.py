"""Environment configuration of every function, validated once per cold start.

CDK (``infra/``) sets these variables; the embedded AWS reads them back from the deployed
functions. One process may host several functions with different environments (local
mode), so settings are cached per distinct environment, not per module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from .domain.agreements import AGREEMENTS_FILE
from .domain.codes import LocalGovernmentCode

Code6 = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class SettingsError(RuntimeError):
    """A function was deployed with a missing or malformed environment variable."""


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class MunicipalityCsSettings(_Settings):
    MUNICIPALITY_CODE: Code6
    STATE_TABLE_NAME: NonEmpty
    SIGNING_KEY_ID: NonEmpty
    OUTBOUND_QUEUE_URL: NonEmpty
    DROP_ZONE_BUCKET: NonEmpty
    DROP_ZONE_PREFIX: str = ""
    # The tier's card table (counter API): the CS records each resident's latest notice there.
    CARD_TABLE_NAME: str = ""
    # The tier's local-record table: each change with the fields that never leave the tier.
    LOCAL_RECORD_TABLE_NAME: str = ""
    # The tier's CS failed-event queue: an inbox event that failed its last attempt is kept
    # there with the reason (domain/inbox.py). Empty: the inbox queue's redrive keeps it.
    FAILED_EVENTS_QUEUE_URL: str = ""

    @field_validator("MUNICIPALITY_CODE")
    @classmethod
    def _valid_code(cls, v: str) -> str:
        code = LocalGovernmentCode.parse(v, "MUNICIPALITY_CODE")
        if code.is_prefecture:
            raise ValueError("MUNICIPALITY_CODE must be a municipality, not a prefecture code")
        return v


class TierSettings(_Settings):
    TABLE_NAME: NonEmpty
    DATA_KEY_ID: NonEmpty
    SENDER_KEY_ALIAS_PREFIX: NonEmpty
    DEAD_LETTER_QUEUE_URL: NonEmpty


class PrefectureSettings(TierSettings):
    PREFECTURE_CODE: Code6
    SIGNING_KEY_ID: NonEmpty
    FORWARD_QUEUE_URL: NonEmpty
    # The channel between municipalities (services/channel.py): the queue of this prefecture's
    # municipality tier; unset, channel messages for its municipalities are dead-lettered (no_route).
    CHANNEL_QUEUE_URL: str = ""

    @field_validator("PREFECTURE_CODE")
    @classmethod
    def _valid_code(cls, v: str) -> str:
        if not LocalGovernmentCode.parse(v, "PREFECTURE_CODE").is_prefecture:
            raise ValueError("PREFECTURE_CODE must be a prefecture-level code such as 200000")
        return v


class NationalSettings(TierSettings):
    ALLOWED_PREFECTURES: tuple[Code6, ...] = Field(min_length=1)
    # The channel's way down: each prefecture's inbound queue URL, ``{prefecture}`` replaced by
    # its code; unset, channel messages are dead-lettered (no_route).
    PREFECTURE_INBOUND_URL_TEMPLATE: str = ""

    @field_validator("ALLOWED_PREFECTURES", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


class ChannelSettings(_Settings):
    """A municipality tier's end of the channel between municipalities (services/channel.py)."""

    PREFECTURE_CODE: Code6
    TABLE_NAME: NonEmpty  # the tier's card table: register of residents, channel records, pins
    CHANNEL_KEY_ID: NonEmpty  # this tier's channel key (Decrypt of bodies addressed here)
    CHANNEL_KEY_ALIAS_PREFIX: NonEmpty  # + prefecture number: the reader tier's channel key
    SIGNING_KEY_ALIAS_PREFIX: NonEmpty  # + municipality code: its notice-signing key
    SENDER_KEY_ALIAS_PREFIX: NonEmpty
    OUTBOUND_QUEUE_URL: NonEmpty  # the prefecture's inbound queue
    DEAD_LETTER_QUEUE_URL: NonEmpty
    # The tier's local-record table (wide-area copies are answered from it); empty: not answered.
    LOCAL_RECORDS_TABLE_NAME: str = ""
    # The tier's card-event key (decision 0050): cards of this tier are authenticated for counters
    # of other tiers and carried over to them; empty: those queries are not answered.
    CARD_EVENT_KEY_ID: str = ""


S = TypeVar("S", bound=_Settings)


@lru_cache(maxsize=512)
def _load(model: type[S], items: tuple[tuple[str, str], ...]) -> S:
    try:
        return model.model_validate(dict(items))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"{model.__name__}: {problems}") from None


def load_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    env = os.environ if environ is None else environ
    names = model.model_fields.keys()
    return _load(model, tuple((k, env[k]) for k in sorted(names) if k in env))


class ProvisionSettings(_Settings):
    """The provision API and the batch function (national tier)."""

    TABLE_NAME: NonEmpty
    DATA_KEY_ID: NonEmpty
    PROVISION_LOG_TABLE: NonEmpty
    PROVISION_STATE_TABLE: NonEmpty
    BATCH_BUCKET: NonEmpty
    BATCH_QUEUE_URL: NonEmpty
    AGREEMENTS_FILE: NonEmpty = AGREEMENTS_FILE
    # The deployment's seal key (ARN): the disclosure checks the seals with its public key.
    SEAL_KEY_ID: NonEmpty
    # JSON object: prefecture code -> that prefecture tier's execute-api endpoint id. Kept as
    # text so the settings stay hashable (runtimes are cached per settings).
    PREFECTURE_API_ENDPOINTS: str = "{}"

    @field_validator("PREFECTURE_API_ENDPOINTS")
    @classmethod
    def _json_object(cls, v: str) -> str:
        parsed = json.loads(v or "{}")
        if not isinstance(parsed, dict) or not all(isinstance(x, str) for x in parsed.values()):
            raise ValueError("PREFECTURE_API_ENDPOINTS must be a JSON object of prefecture code -> endpoint id")
        return v or "{}"

    def prefecture_endpoints(self) -> dict[str, str]:
        return json.loads(self.PREFECTURE_API_ENDPOINTS)


class LedgerWatchSettings(_Settings):
    """The ledger watch of a processing tier (``services.ledger_watch``)."""

    TABLE_NAME: NonEmpty
    TIER: Annotated[str, StringConstraints(pattern=r"^(prefecture|national)$")]
    # Beside the code (synth writes it): {"sources": [{"cs_state_table", "municipalities", "tiers_below"}]}
    WATCH_FILE: NonEmpty = "ledger-watch.json"


class ReconciliationSettings(_Settings):
    """The scheduled reconciliation of a processing tier (``services.reconciliation``)."""

    TABLE_NAME: NonEmpty
    TIER: Annotated[str, StringConstraints(pattern=r"^(prefecture|national)$")]
    TIER_NAME: NonEmpty  # pref-200000, national: the report's title
    REPORTS_BUCKET: NonEmpty
    # Beside the code (synth writes it): {"sources": [{"cs_state_table", "municipalities": {code: name},
    # "prefecture_table"}]}
    SOURCES_FILE: NonEmpty = "reconciliation.json"


class MonitoringReportSettings(_Settings):
    """The monthly monitoring report of a processing tier (``services.monitoring_report``)."""

    TIER: Annotated[str, StringConstraints(pattern=r"^(prefecture|national)$")]
    TIER_NAME: NonEmpty  # pref-200000, national
    DEPLOYMENT: NonEmpty
    PREFIX: NonEmpty
    REPORTS_BUCKET: NonEmpty
    # {"tiers": ["pref-200000", "muni-200000"], "services": {"jukinet-pref-200000": "pref-200000", ...}}
    REPORT_SCOPE: NonEmpty
    # The national tier: the provision log (seals, statistics against the log); "" elsewhere.
    PROVISION_LOG_TABLE: str = ""
    PROVISION_STATE_TABLE: str = ""

    @field_validator("REPORT_SCOPE")
    @classmethod
    def _scope(cls, value: str) -> str:
        try:
            scope = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"REPORT_SCOPE must be JSON: {exc}") from None
        if not isinstance(scope, dict) or not scope.get("tiers") or not isinstance(scope.get("services"), dict):
            raise ValueError('REPORT_SCOPE must be {"tiers": [...], "services": {service: tier}}')
        return value


class SealerSettings(_Settings):
    PROVISION_LOG_TABLE: NonEmpty
    PROVISION_STATE_TABLE: NonEmpty
    SEAL_KEY_ID: NonEmpty
    SEAL_ARCHIVE_BUCKET: NonEmpty


def _csv(v: object) -> object:
    if isinstance(v, str):
        return tuple(p.strip() for p in v.split(",") if p.strip())
    return v


class CardSettings(_Settings):
    """The counter API of one municipality tier (住基カード)."""

    CARD_TABLE_NAME: NonEmpty
    CARD_EVENT_KEY_ID: NonEmpty
    MUNICIPALITIES: tuple[Code6, ...] = Field(min_length=1)
    COUNTER_ROLE_PREFIX: NonEmpty
    OPERATOR_ROLES: tuple[str, ...] = ()
    ACCOUNT_ID: str = ""
    # This tier's execute-api endpoint ids; empty: the resource policy alone decides.
    API_ENDPOINT_IDS: tuple[str, ...] = ()
    # The wide-area copy (services/wide_area_copy.py): the tier's channel queue (the counter
    # nudges the channel function), the tier's channel key (the counter opens the answers), the
    # municipalities' names for the copy (a JSON file beside the code: code → name).
    CHANNEL_QUEUE_URL: str = ""
    CHANNEL_KEY_ID: str = ""
    CHANNEL_KEY_ALIAS_PREFIX: str = "alias/jukinet/channel/"
    MUNICIPALITY_NAMES_FILE: str = ""
    # Cards carried over from another tier (decision 0050): "{prefecture}" → that tier's card-event key alias.
    CARD_EVENT_KEY_ALIAS_TEMPLATE: str = "alias/jukinet/muni-{prefecture}/card-events"

    _split = field_validator("MUNICIPALITIES", "OPERATOR_ROLES", "API_ENDPOINT_IDS", mode="before")(_csv)
