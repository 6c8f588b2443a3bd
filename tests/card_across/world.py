"""Cards across tiers in-process (moto ``mock_aws``): the wide-area copy's world (two prefectures,
their municipality tiers, the national tier, each tier's counter API; ``tests/copy/world.py``) with
each tier's card-event key under its alias, given to the tier's channel function as well
(decision 0050)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from jukinet.domain.card import VirtualCard
from jukinet.handlers import card_runtime

from ..channel.world import CHIYODA, NAGANO, NAGANO_PREF, TOKYO_PREF
from ..copy.world import CopyWorld, Person, pref_of
from ..pipeline.harness import environment

EVENTS_ALIAS = "alias/jukinet/muni-{prefecture}/card-events"


@dataclass
class CrossWorld(CopyWorld):
    def __post_init__(self) -> None:
        super().__post_init__()
        for pref in (NAGANO_PREF, TOKYO_PREF):
            self.kms.create_alias(AliasName=EVENTS_ALIAS.format(prefecture=pref),
                                  TargetKeyId=self.keys[f"events-{pref}"])
        card_runtime._remote.cache_clear()

    def channel_env(self, pref: str) -> dict[str, str]:
        return {**super().channel_env(pref), "CARD_EVENT_KEY_ID": self.keys[f"events-{pref}"]}

    def call(self, method: str, path: str, body: object = None, *, at: str = CHIYODA,
             who: str | None = None) -> tuple[int, dict]:
        with environment(self.counter_env(pref_of(at))):
            remote = card_runtime.remote()
            remote.clock = remote.reader.clock = remote.cards.clock = lambda: self.now
        return super().call(method, path, body, at=at, who=who)

    # --- the remote flow, step by step --------------------------------------------------------
    def start(self, serial: str, *, at: str = CHIYODA, who: str | None = None) -> tuple[int, dict]:
        return self.call("POST", "/v1/remote-authentications", {"serial": serial}, at=at, who=who)

    def poll(self, auth_id: str, *, at: str = CHIYODA, who: str | None = None) -> tuple[int, dict]:
        return self.call("GET", f"/v1/remote-authentications/{auth_id}", at=at, who=who)

    def answer(self, auth_id: str, signature: bytes, *, at: str = CHIYODA, who: str | None = None) -> tuple[int, dict]:
        return self.call("POST", f"/v1/remote-authentications/{auth_id}/answer",
                         {"signature": base64.b64encode(signature).decode()}, at=at, who=who)

    def pin_failure(self, auth_id: str, *, at: str = CHIYODA, who: str | None = None) -> tuple[int, dict]:
        return self.call("POST", f"/v1/remote-authentications/{auth_id}/pin-failure", {}, at=at, who=who)

    def challenge(self, serial: str, *, at: str = CHIYODA, who: str | None = None) -> dict:
        status, started = self.start(serial, at=at, who=who)
        assert status == 202, started
        self.pump()
        status, body = self.poll(started["id"], at=at, who=who)
        assert status == 200, body
        return body

    def remote_authenticate(self, chip: VirtualCard, *, at: str = CHIYODA, pin: str = "1234",
                            who: str | None = None) -> dict:
        body = self.challenge(chip.serial, at=at, who=who)
        assert body["status"] == "challenge", body
        status, sent = self.answer(body["id"], chip.sign(body["message"].encode(), pin), at=at, who=who)
        assert status == 202, sent
        self.pump()
        status, outcome = self.poll(body["id"], at=at, who=who)
        assert status == 200, outcome
        return outcome

    def resident_with_card(self, person: Person, home: str = NAGANO) -> VirtualCard:
        self.live(home, person)
        return self.card(person, home)
