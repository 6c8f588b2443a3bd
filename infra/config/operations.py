"""Operations: who is told, how long logs stay, who administers keys."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import _require

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$")
_IAM_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/.+|user/.+)$")


@dataclass(frozen=True)
class Operations:
    """Who is told, how long logs stay, when a queue counts as stuck, who administers keys.

    ``key_administrators``: IAM principal ARNs allowed to administer (never use) each tier's
    KMS keys. Empty means the account root, i.e. IAM policies of that account decide who
    the administrators are — still without any cryptographic use of the keys.
    """

    alarm_email: str | None = None
    # A chat tool's incoming webhook (HTTPS): SNS posts each alarm's JSON there; the endpoint
    # must confirm the subscription (SNS sends a SubscriptionConfirmation first). The URL is in
    # the templates: use one that is not a bearer secret, or a relay inside the organisation.
    alarm_chat_url: str | None = None
    log_retention_days: int = 365
    flow_log_retention_days: int = 90
    # Amazon GuardDuty in each account and region that hosts a trail (off: an account may run it
    # organisation-wide already, and it is billed per event analysed). Not emulated locally.
    guardduty: bool = False
    oldest_message_alarm_seconds: int = 900
    key_administrators: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.alarm_email is not None:
            _require(bool(_EMAIL.match(self.alarm_email)), f"alarm_email {self.alarm_email!r} is not an address")
        if self.alarm_chat_url is not None:
            _require(bool(_HTTPS_URL.match(self.alarm_chat_url)),
                     f"alarm_chat_url {self.alarm_chat_url!r} must be an https:// URL (SNS protocol https)")
        for arn in self.key_administrators:
            _require(bool(_IAM_ARN.match(arn)), f"key administrator {arn!r} is not an IAM principal ARN")
        _require(self.oldest_message_alarm_seconds >= 60, "oldest_message_alarm_seconds must be at least 60")
