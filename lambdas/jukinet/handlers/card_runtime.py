"""The counter function's runtime: its settings → the services, built once per distinct
environment (a cold start; ``lru_cache`` on the settings and the endpoint) — ``CardService``,
``WideAreaCopies``, ``SpecialMoves`` (with ``CardCarryOvers``), ``RemoteAuthentications``.
The functions of the second phase need the tier's channel: without it they are refused
``NOT_FOUND`` here. ``handlers/card_api.py`` calls ``runtime()``, ``copies()``, ``moves()``,
``remote()``; tests reset a cache with ``_runtime.cache_clear()`` and the like.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from ..adapters.card_store import CardStore
from ..adapters.channel_store import ChannelStore
from ..adapters.copy_store import CopyStore
from ..adapters.special_move_store import SpecialMoveStore
from ..clock import system_clock
from ..domain.card import CardRefusal, CardRefusalCode
from ..services.card import CardService, EventSigner
from ..services.card_across_tiers import CardCarryOvers, CardEventKeys, RemoteAuthentications
from ..services.channel import ChannelEndpoint, ChannelKeys
from ..services.special_move import SpecialMoves
from ..services.wide_area_copy import WideAreaCopies
from ..settings import CardSettings, load_settings


@lru_cache(maxsize=8)  # one per distinct environment: a cold start
def _runtime(settings: CardSettings, endpoint: str | None) -> CardService:
    return CardService(CardStore(settings.CARD_TABLE_NAME), EventSigner(settings.CARD_EVENT_KEY_ID),
                       municipalities=settings.MUNICIPALITIES, counter_role_prefix=settings.COUNTER_ROLE_PREFIX,
                       operator_roles=settings.OPERATOR_ROLES, account=settings.ACCOUNT_ID or None,
                       allowed_endpoints=settings.API_ENDPOINT_IDS or None, clock=system_clock)


def runtime() -> CardService:
    return _runtime(load_settings(CardSettings), os.environ.get("AWS_ENDPOINT_URL"))


@lru_cache(maxsize=8)
def _copies(settings: CardSettings, endpoint: str | None) -> WideAreaCopies:
    cards = _runtime(settings, endpoint)
    names: dict[str, str] = {}
    if settings.MUNICIPALITY_NAMES_FILE:
        path = settings.MUNICIPALITY_NAMES_FILE
        if not os.path.isabs(path):
            path = os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "."), path)
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh)
    store = ChannelStore(settings.CARD_TABLE_NAME)
    # Only .result is used: the answers are read (Decrypt) here; requests are sent by the channel function.
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", store,
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    return WideAreaCopies(cards, CopyStore(settings.CARD_TABLE_NAME), reader, settings.CHANNEL_QUEUE_URL, names=names,
                          clock=cards.clock)


@lru_cache(maxsize=8)
def _remote(settings: CardSettings, endpoint: str | None) -> RemoteAuthentications:
    cards = _runtime(settings, endpoint)
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", ChannelStore(settings.CARD_TABLE_NAME),
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    return RemoteAuthentications(cards, reader, settings.CHANNEL_QUEUE_URL, clock=cards.clock)


def remote() -> RemoteAuthentications:
    """Cards of other tiers, through the channel (decision 0050)."""
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "cards of other tiers are not served here (no channel)")
    return _remote(settings, os.environ.get("AWS_ENDPOINT_URL"))


def carry_overs() -> CardCarryOvers:
    """The new home's side of a card's carry-over from another tier (decision 0050), for the
    special move-in (転入の特例) to call: ``request`` then ``complete``."""
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "cards of other tiers are not served here (no channel)")
    remote_side = _remote(settings, os.environ.get("AWS_ENDPOINT_URL"))
    return CardCarryOvers(remote_side.cards, remote_side.reader, settings.CHANNEL_QUEUE_URL,
                          CardEventKeys(settings.CARD_EVENT_KEY_ALIAS_TEMPLATE), clock=remote_side.cards.clock)


def copies() -> WideAreaCopies:
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "wide-area copies are not enabled in this tier (no channel)")
    return _copies(settings, os.environ.get("AWS_ENDPOINT_URL"))


@lru_cache(maxsize=8)
def _moves(settings: CardSettings, endpoint: str | None) -> SpecialMoves:
    cards = _runtime(settings, endpoint)
    reader = ChannelEndpoint(settings.MUNICIPALITIES[0][:2] + "0000", ChannelStore(settings.CARD_TABLE_NAME),
                             ChannelKeys(settings.CHANNEL_KEY_ID, settings.CHANNEL_KEY_ALIAS_PREFIX),
                             None, None, "", "", None, clock=cards.clock)  # type: ignore[arg-type]
    moves = SpecialMoves(cards, SpecialMoveStore(settings.CARD_TABLE_NAME), reader, settings.CHANNEL_QUEUE_URL,
                         clock=cards.clock)
    # the card of another tier carried over on the move-in (decision 0050), on the moves' clock
    moves.carry_overs = CardCarryOvers(cards, reader, settings.CHANNEL_QUEUE_URL,
                                       CardEventKeys(settings.CARD_EVENT_KEY_ALIAS_TEMPLATE),
                                       clock=lambda: moves.clock())
    return moves


def moves() -> SpecialMoves:
    settings = load_settings(CardSettings)
    if not settings.CHANNEL_QUEUE_URL or not settings.CHANNEL_KEY_ID:
        raise CardRefusal(CardRefusalCode.NOT_FOUND, "special moves are not enabled in this tier (no channel)")
    return _moves(settings, os.environ.get("AWS_ENDPOINT_URL"))
