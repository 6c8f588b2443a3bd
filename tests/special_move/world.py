"""The special move-out and move-in in-process (moto ``mock_aws``): the wide-area copy's world
(``tests/copy/world.py``: two prefectures' tiers, the national tier, local records, the counter
API) with the special-move routes. 上田市 (A) is the home; 松本市 (B) the new municipality; 長野市
plays the other municipality C of the attacks."""

from __future__ import annotations

import contextlib
import datetime as dt

from jukinet.adapters.card_store import CardStore
from jukinet.adapters.special_move_store import SpecialMoveStore
from jukinet.domain.card import VirtualCard
from jukinet.handlers import card_runtime

from ..channel.world import MATSUMOTO, NAGANO_PREF, UEDA
from ..copy.world import CopyWorld, Person, pref_of

TABLE = f"jukinet-cards-{NAGANO_PREF}"


class MoveWorld(CopyWorld):
    def __post_init__(self) -> None:
        super().__post_init__()
        card_runtime._moves.cache_clear()

    def call(self, method: str, path: str, body: object = None, **kwargs) -> tuple[int, dict]:
        at = kwargs.get("at", MATSUMOTO)
        from ..pipeline.harness import environment
        with environment(self.counter_env(pref_of(at))), contextlib.suppress(Exception):
            moves = card_runtime.moves()
            moves.clock = moves.reader.clock = lambda: self.now
        return super().call(method, path, body, **kwargs)

    # --- residents with cards ------------------------------------------------------------------
    def holder(self, person: Person, home: str = UEDA) -> VirtualCard:
        self.live(home, person)
        return self.card(person, home)

    # --- A ------------------------------------------------------------------------------------
    def file(self, code: str, *, at: str = UEDA, planned: str = "2003-01-25", by_post: bool = False,
             auth: str | None = None, destination: str = "長野県松本市丸の内3番7号", who: str | None = None):
        body = {"resident_code": code, "planned_move_date": planned, "destination_address": destination,
                "by_post": by_post}
        if auth is not None:
            body["card_authentication"] = auth
        return self.call("POST", "/v1/special-move-outs", body, at=at, who=who)

    def filed_at_counter(self, person: Person, chip: VirtualCard, **kwargs) -> dict:
        status, body = self.file(person.code, auth=self.authenticate(chip, at=UEDA), **kwargs)
        assert status == 201, body
        return body

    def move_out(self, code: str, *, at: str = UEDA) -> tuple[int, dict]:
        return self.call("GET", f"/v1/special-move-outs/{code}", at=at)

    def cancel(self, code: str, *, at: str = UEDA) -> tuple[int, dict]:
        return self.call("POST", f"/v1/special-move-outs/{code}/cancellation", {}, at=at)

    # --- B ------------------------------------------------------------------------------------
    def move_in_request(self, code: str, chip: VirtualCard | None, *, at: str = MATSUMOTO, home: str = UEDA,
                        moved_on: str = "2003-01-20", auth: str | None = None) -> tuple[int, dict]:
        auth = auth if auth is not None else self.authenticate(chip, at=at)
        return self.call("POST", "/v1/special-move-ins", {"resident_code": code, "home_municipality": home,
                                                           "moved_on": moved_on, "card_authentication": auth}, at=at)

    def move_in_result(self, correlation: str, *, at: str = MATSUMOTO, who: str | None = None) -> tuple[int, dict]:
        return self.call("GET", f"/v1/special-move-ins/{correlation}", at=at, who=who)

    def register_move_in(self, correlation: str, *, at: str = MATSUMOTO) -> tuple[int, dict]:
        return self.call("POST", f"/v1/special-move-ins/{correlation}/move-in", {}, at=at)

    def certified(self, person: Person, chip: VirtualCard, **kwargs) -> dict:
        status, accepted = self.move_in_request(person.code, chip, **kwargs)
        assert status == 202, accepted
        self.pump()
        status, result = self.move_in_result(accepted["correlation"], at=kwargs.get("at", MATSUMOTO))
        assert status == 200, result
        return result

    def special_move(self, person: Person, chip: VirtualCard, **kwargs) -> dict:
        """Filed at A, certified and registered at B, completed."""
        result = self.certified(person, chip, **kwargs)
        assert result["status"] == "certified", result
        status, body = self.register_move_in(result["correlation"], at=kwargs.get("at", MATSUMOTO))
        assert status == 202, body
        self.pump()
        status, done = self.move_in_result(result["correlation"], at=kwargs.get("at", MATSUMOTO))
        assert status == 200, done
        return done

    # --- the stores ---------------------------------------------------------------------------------
    @property
    def cards(self) -> CardStore:
        return CardStore(TABLE)

    @property
    def moves(self) -> SpecialMoveStore:
        return SpecialMoveStore(TABLE)

    def later(self, **kwargs) -> None:
        self.now = self.now + dt.timedelta(**kwargs)
