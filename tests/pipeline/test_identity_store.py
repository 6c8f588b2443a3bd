"""The identity store's ordering guarantees, directly against moto DynamoDB and KMS."""

from __future__ import annotations

import datetime as dt
import random
import threading

from jukinet.adapters.identity_store import IdentityStore, ledger_attributes, ledger_from_item
from jukinet.adapters.kms import DataKeys
from jukinet.domain.ledger import Ledger
from jukinet.domain.notice import UpdateNotice

from .exports import person

STORED_AT = dt.datetime(2003, 1, 20, 1, 0, tzinfo=dt.UTC)


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
    threads = [threading.Thread(target=_store(pipeline).apply, args=([n],), kwargs={"now": STORED_AT}) for n in shuffled]
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
    assert store.apply([new], now=STORED_AT).current_changed == 1
    result = store.apply([old], now=STORED_AT)
    assert (len(result.stored), result.current_changed, result.stale) == (1, 0, 1)
    assert store.current(old.resident_code.value).notice_id == new.notice_id


def test_reapplying_a_batch_reports_duplicates_and_changes_nothing(pipeline):
    notices = _notices(3)
    store = _store(pipeline)
    store.apply(notices, now=STORED_AT)
    again = store.apply(notices, now=STORED_AT)
    assert (len(again.stored), len(again.duplicates), again.current_changed) == (0, 3, 0)


def test_gap_times_survive_the_item_form():
    t0 = dt.datetime(2027, 3, 31, 14, 50, tzinfo=dt.UTC)
    ledger = Ledger().add([(1, "2027-03"), (4, "2027-03")], [], t0).add_dead("2027-03", 1).release_dead("2027-03", 1)
    assert ledger.gap_since and ledger.redriven
    assert ledger_from_item({"pk": {"S": "x"}, **ledger_attributes(ledger)}) == ledger
    assert ledger_from_item(None) == Ledger()


def test_ledger_survives_its_item_form_and_counts_a_dead_letter_once(pipeline):
    store = _store(pipeline)
    store.update_ledger("202011", stored=[(1, "2003-01"), (3, "2003-01")])
    assert store.record_dead_letter("202011", "digest|2003-01", "2003-01", 2)
    assert not store.record_dead_letter("202011", "digest|2003-01", "2003-01", 2)
    # Recorded without a time, the gap counts as seen long ago (epoch): an aged gap.
    assert store.ledger("202011") == Ledger(2, ((1, 1), (3, 3)), (("2003-01", 2),), (("2003-01", 2),),
                                            gap_since=((2, 2, "1970-01-01T00:00:00Z"),))


def test_blind_index_key_is_not_a_key_that_seals_facts(pipeline):
    store = _store(pipeline)
    store.apply(_notices(1), now=STORED_AT)
    meta = pipeline.ddb.get_item(TableName=pipeline.pref_table,
                                 Key={"pk": {"S": "META"}, "sk": {"S": "blind-index-key"}})["Item"]
    items = pipeline.ddb.scan(TableName=pipeline.pref_table)["Items"]
    deks = {i["dek"]["B"] for i in items if "dek" in i}
    assert deks and meta["wrapped"]["B"] not in deks
    assert store.blind_index_key() not in {store.data_keys.unwrap(d) for d in deks}
