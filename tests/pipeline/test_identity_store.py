"""The identity store's ordering guarantees, directly against moto DynamoDB and KMS."""

from __future__ import annotations

import random
import threading

from jukinet.adapters.identity_store import IdentityStore, gaps_in, sequence_runs
from jukinet.adapters.kms import DataKeys
from jukinet.domain.notice import UpdateNotice

from .exports import person


def _store(p) -> IdentityStore:
    return IdentityStore(p.pref_table, DataKeys(p.keys["data-prefecture"], {"tier": "prefecture"}))


def _notices(n: int) -> list[UpdateNotice]:
    p = person(random.Random(5))
    facts = {"resident_code": p["resident_code"], "name": {"kanji": p["name_kanji"], "kana": p["name_kana"]},
             "birth_date": p["birth_date"], "sex": p["sex"]}
    return [UpdateNotice.from_dict({
        "municipality": "202011", "sequence": i + 1, "resident_code": p["resident_code"],
        "reason": "31" if i else "11", "change_date": f"2003-01-{i + 1:02d}", "notice_time": f"2003-01-{i + 1:02d}T09:00:00Z",
        "facts": {**facts, "address": f"長野県長野市{i}番地"},
    }) for i in range(n)]


def test_concurrent_writers_converge_on_the_newest_notice(pipeline):
    notices = _notices(12)
    shuffled = notices[:]
    random.Random(1).shuffle(shuffled)
    threads = [threading.Thread(target=_store(pipeline).apply, args=([n],)) for n in shuffled]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = _store(pipeline)
    assert store.current(notices[0].resident_code.value).facts.address == "長野県長野市11番地"
    assert len(store.history(notices[0].resident_code.value)) == 12


def test_older_notice_applied_last_is_kept_in_history_only(pipeline):
    old, new = _notices(2)
    store = _store(pipeline)
    assert store.apply([new]).current_changed == 1
    result = store.apply([old])
    assert (len(result.stored), result.current_changed, result.stale) == (1, 0, 1)
    assert store.current(old.resident_code.value).notice_id == new.notice_id


def test_reapplying_a_batch_reports_duplicates_and_changes_nothing(pipeline):
    notices = _notices(3)
    store = _store(pipeline)
    store.apply(notices)
    again = store.apply(notices)
    assert (len(again.stored), len(again.duplicates), again.current_changed) == (0, 3, 0)


def test_gaps_are_the_numbers_missing_below_the_highest_received():
    assert gaps_in([(1, 3), (6, 7), (9, 9)]) == [(4, 5), (8, 8)]
    assert gaps_in([(2, 2)]) == [(1, 1)]
    assert gaps_in([(5, 9), (1, 4)]) == []
    ns = [n for n in _notices(5) if n.sequence != 3]
    assert sequence_runs(ns) == {"202011": [(1, 2), (4, 5)]}
