"""Where a stolen card tried at counters of other prefectures is alarmed (decision 0050): the home
tier's channel function emits ``CardAuthenticationRefusals`` and ``EndedCardPresented`` under the
home tier's service, so the home tier's ``card-authentication-refusals`` and
``ended-card-presented`` alarms — as ``infra/components/counter.py`` synthesizes them — evaluated by
the embedded AWS's CloudWatch evaluator see every refusal of its cards, whichever tier asked. (A
refused carry-over raises ``card-unauthorised-attempts``: tests/card_across/test_special_move.py.)"""

from __future__ import annotations

from embedded_aws.monitoring import ALARM, OK

from ..channel.world import CHIYODA, NAGANO, resident
from ..copy.world import Person, counter
from .conftest import HOME_ALARMS
from .world import CrossWorld


def test_a_stolen_card_tried_at_counters_of_another_prefecture_raises_its_home_tiers_alarms(
        world: CrossWorld, home_alarms) -> None:
    chip = world.resident_with_card(Person(resident(61), "信濃太郎"))
    outcome = world.remote_authenticate(chip)  # the resident, before the loss: quiet
    assert outcome["status"] == "authenticated"
    assert home_alarms() == dict.fromkeys(HOME_ALARMS, OK)
    assert world.call("POST", f"/v1/cards/{chip.serial}/suspension", {"reason": "stolen"}, at=NAGANO)[0] == 200
    for n in range(11):  # the thief at 千代田区's counters, clerk after clerk
        body = world.challenge(chip.serial, who=counter(CHIYODA, f"clerk-{n}"))
        assert body["code"] == "CARD_SUSPENDED"
    assert home_alarms() == {"card-authentication-refusals": ALARM, "ended-card-presented": ALARM,
                             "card-unauthorised-attempts": OK}
