"""The provision API through its handler, against moto: every endpoint, every refusal, and
data minimisation per affair."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from jukinet.domain.codes import ResidentCode
from jukinet.domain.provision import RefusalCode

from .world import ACCOUNT, session


def _codes(rs):
    return [r.code for r in rs]


def _entries(world, code):
    entries, _ = world.log().chain(code)
    return entries


# --- look-up ----------------------------------------------------------------------------------


def test_lookup_answers_each_code_with_only_the_affairs_fields_and_records_it(world):
    rs = world.add_residents(3)
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "ALIVE", "resident_codes": _codes(rs)})
    assert status == 200
    assert body["provision_id"].startswith("P-")
    for r, result in zip(rs, body["results"], strict=True):
        assert result["resident_code"] == r.code and result["outcome"] == "provided"
        # An alive check gets status and change information, never the name or address.
        assert set(result["facts"]) == {"resident_code", "status", "change_information"}
        entries = _entries(world, r.code)
        assert len(entries) == 1
        assert entries[0].content["provision_id"] == body["provision_id"]
        assert entries[0].content["fields"] == ["change_information", "resident_code", "status"]
        assert entries[0].content["function"] == "lookup"


@pytest.mark.parametrize("affair, fields", [
    ("PAY", {"resident_code", "name", "birth_date", "sex", "address", "status", "change_information"}),
    ("ALIVE", {"resident_code", "status", "change_information"}),
])
def test_each_affair_gets_exactly_its_permitted_fields(world, affair, fields):
    r = world.add_residents(1)[0]
    _, body = world.call("POST", "/v1/lookups", {"affair_code": affair, "resident_codes": [r.code]})
    assert set(body["results"][0]["facts"]) == fields


def test_requested_subset_of_fields_is_all_that_is_given_and_logged(world):
    r = world.add_residents(1)[0]
    _, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code],
                                                 "fields": ["name", "status"]})
    assert set(body["results"][0]["facts"]) == {"name", "status"}
    assert _entries(world, r.code)[0].content["fields"] == ["name", "status"]


def test_unknown_and_deleted_codes_are_answered_explicitly_and_only_deletions_are_logged(world):
    alive, dead = world.add_residents(2)
    world.delete_resident(dead, sequence=100)
    unknown = _valid_unknown_code(world)
    _, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY",
                                                 "resident_codes": [alive.code, dead.code, unknown]})
    outcomes = {r["resident_code"]: r for r in body["results"]}
    assert outcomes[alive.code]["outcome"] == "provided"
    assert outcomes[dead.code]["outcome"] == "deleted"
    # A deleted record says so, with the change, and nothing of the former person.
    assert set(outcomes[dead.code]["facts"]) == {"status", "change_information"}
    assert outcomes[dead.code]["facts"]["change_information"]["reason_label"] == "死亡"
    assert outcomes[unknown] == {"resident_code": unknown, "outcome": "not_found", "facts": {}}
    assert _entries(world, unknown) == []
    assert len(_entries(world, dead.code)) == 1


def _valid_unknown_code(world, seed: int = 99) -> str:
    known = {r.code for r in world.residents}
    rng = random.Random(seed)
    while True:
        code = ResidentCode.generate(rng).value
        if code not in known:
            return code


def test_prefecture_look_up_is_recorded_as_own_use_and_limited_to_its_residents(world):
    ours = world.add_residents(1, seed=3, municipality="202011")[0]
    theirs = world.add_residents(1, seed=4, municipality="131016")[0]
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PASSPORT",
                                                      "resident_codes": [ours.code, theirs.code]}, who="pref-own-use",
                              vpce="vpce-0f000000000000200")
    assert status == 200 and body["function"] == "own_use"
    by_code = {r["resident_code"]: r["outcome"] for r in body["results"]}
    assert by_code == {ours.code: "provided", theirs.code: "not_found"}
    entry = _entries(world, ours.code)[0].content
    assert entry["function"] == "own_use" and entry["provider"] == "200000"
    assert _entries(world, theirs.code) == []


# --- search -------------------------------------------------------------------------------------


def test_search_by_the_basic_facts_answers_a_unique_match_in_any_kana_spelling(world):
    r = world.add_residents(5)[2]
    hiragana = "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in r.kana)
    status, body = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": hiragana,
                                                       "birth_date": r.birth_date})
    assert status == 200 and body["outcome"] == "unique"
    assert body["result"]["resident_code"] == r.code
    assert _entries(world, r.code)[0].content["function"] == "search"


def test_search_with_several_matches_is_ambiguous_and_reveals_no_code(world):
    a = world.add_residents(1, seed=7)[0]
    # A second resident with the same kana name and birth date, another code.
    from jukinet.domain.notice import UpdateNotice

    other = _valid_unknown_code(world)
    world.store().apply([UpdateNotice.from_dict({
        "municipality": "202011", "sequence": 900, "resident_code": other, "reason": "13",
        "change_date": a.birth_date, "notice_time": "2003-01-06T09:00:00Z",
        "facts": {"resident_code": other, "name": {"kanji": "別人", "kana": a.kana}, "birth_date": a.birth_date,
                  "sex": a.sex, "address": "長野県松本市1番地"}})], now=world.now)
    status, body = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": a.kana,
                                                       "birth_date": a.birth_date})
    assert status == 200 and body["outcome"] == "ambiguous"
    assert "result" not in body or body["result"] is None
    assert a.code not in json.dumps(body) and other not in json.dumps(body)
    # Narrowed by the address, the match is unique again.
    _, body = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": a.kana,
                                                  "birth_date": a.birth_date, "address": "長野県 松本市1番地"})
    assert body["outcome"] == "unique" and body["result"]["resident_code"] == other


def test_search_without_a_match_is_not_found_and_logs_nothing(world):
    world.add_residents(2)
    status, body = world.call("POST", "/v1/searches", {"affair_code": "PAY", "kana_name": "ムメイ　ダレモ",
                                                       "birth_date": "1901-01-01"})
    assert status == 200 and body["outcome"] == "not_found"


# --- refusals ------------------------------------------------------------------------------------


def _refused(status, body, code: RefusalCode):
    assert status == code.status, body
    assert body["error"]["code"] == code.name
    return body["error"]


@pytest.mark.parametrize("case, kwargs, code", [
    ("unknown caller", {"who": "stranger", "vpce": "vpce-0a000000000000001"}, RefusalCode.UNKNOWN_CALLER),
    ("no caller", {"who": None, "vpce": "vpce-0a000000000000001"}, RefusalCode.UNKNOWN_CALLER),
    ("endpoint not configured", {"vpce": "vpce-0bbbbbbbbbbbbbbbb"}, RefusalCode.ENDPOINT_NOT_ALLOWED),
    ("another agency's endpoint", {"vpce": "vpce-0a000000000000002"}, RefusalCode.ENDPOINT_NOT_ALLOWED),
])
def test_callers_and_endpoints_outside_the_configuration_are_refused(world, case, kwargs, code):
    r = world.add_residents(1)[0]
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]}, **kwargs)
    _refused(status, body, code)
    assert _entries(world, r.code) == []


@pytest.mark.parametrize("body, code, field", [
    ({"affair_code": "BANK"}, RefusalCode.AFFAIR_NOT_AGREED, "affair_code"),
    ({"affair_code": "EXPIRED"}, RefusalCode.AGREEMENT_NOT_IN_FORCE, "affair_code"),
    ({"affair_code": "ALIVE", "fields": ["address"]}, RefusalCode.FIELD_NOT_PERMITTED, "fields"),
])
def test_requests_outside_the_agreement_are_refused_without_reading_anyone(world, body, code, field):
    r = world.add_residents(1)[0]
    before = world.calls.copy()
    status, answer = world.call("POST", "/v1/lookups", {**body, "resident_codes": [r.code]})
    error = _refused(status, answer, code)
    assert error["field"] == field
    assert r.code not in json.dumps(answer)
    read = world.calls - before
    assert read["dynamodb.BatchGetItem"] == 0 and read["kms.Decrypt"] == 0
    assert _entries(world, r.code) == []


def test_a_function_not_in_the_agreement_is_refused(world):
    world.add_residents(1)
    status, body = world.call("POST", "/v1/searches", {"affair_code": "ALIVE", "kana_name": "ア",
                                                       "birth_date": "1950-01-01"})
    _refused(status, body, RefusalCode.FUNCTION_NOT_AGREED)


def test_a_malformed_resident_code_is_refused_naming_its_position_and_rule(world):
    r = world.add_residents(1)[0]
    bad = r.code[:-1] + str((int(r.code[-1]) + 1) % 10)
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code, bad]})
    error = _refused(status, body, RefusalCode.INVALID_RESIDENT_CODE)
    assert error["field"] == "resident_codes[1]" and error["rule"] == "check_digit"
    assert _entries(world, r.code) == []  # nothing given, nothing recorded


def test_oversized_requests_are_refused(world):
    codes = [_valid_unknown_code(world)] * 101
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": codes})
    _refused(status, body, RefusalCode.REQUEST_TOO_LARGE)
    status, body = world.call("POST", "/v1/lookups", raw_body=json.dumps({"affair_code": "PAY", "resident_codes": [
        "x" * 30] * 3000}))
    _refused(status, body, RefusalCode.REQUEST_TOO_LARGE)


_SEARCH = {"affair_code": "PAY", "kana_name": "ヤマダ　タロウ", "birth_date": "1970-01-01"}


@pytest.mark.parametrize("path, body, field, rule", [
    # Checked by the request models (the services take these as given: issue 18 item 3) ...
    ("/v1/searches", {**_SEARCH, "kana_name": "ア" * 101}, "kana_name", None),
    ("/v1/searches", {**_SEARCH, "address": "長" * 201}, "address", None),
    ("/v1/searches", {**_SEARCH, "kana_name": 7}, "kana_name", None),
    ("/v1/batches", {"affair_code": "PAY", "input_key": "in/pension/" + "a" * 510}, "input_key", None),
    # ... and by the services, which the models cannot say: blanks, dates, sex, whose key it is.
    ("/v1/searches", {**_SEARCH, "kana_name": "　 "}, "kana_name", "required"),
    ("/v1/searches", {**_SEARCH, "birth_date": "1970-13-01"}, "birth_date", None),
    ("/v1/searches", {**_SEARCH, "sex": "3"}, "sex", None),
    ("/v1/batches", {"affair_code": "  ", "input_key": "in/pension/a.csv"}, "affair_code", "required"),
    ("/v1/batches", {"affair_code": "ALIVE", "input_key": "in/other/a.csv"}, "input_key", "prefix"),
    ("/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/../other/a.csv"}, "input_key", "prefix"),
])
def test_each_rule_of_a_request_is_checked_once_by_the_model_or_the_service(world, path, body, field, rule):
    status, answer = world.call("POST", path, body)
    error = _refused(status, answer, RefusalCode.INVALID_REQUEST)
    assert error["field"] == field, error
    if rule is not None:
        assert error["rule"] == rule, error


def test_malformed_bodies_are_refused_with_the_field_and_rule(world):
    status, body = world.call("POST", "/v1/lookups", {"resident_codes": ["1"]})
    error = _refused(status, body, RefusalCode.INVALID_REQUEST)
    assert error["field"] == "affair_code" and error["rule"] == "missing"
    status, body = world.call("POST", "/v1/lookups", raw_body="{not json")
    _refused(status, body, RefusalCode.INVALID_REQUEST)


def test_monthly_volume_limit_is_enforced(world):
    rs = world.add_residents(4)
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": _codes(rs[:3])})
    assert status == 200
    status, body = world.call("POST", "/v1/lookups", {"affair_code": "SMALL", "resident_codes": [rs[3].code]})
    _refused(status, body, RefusalCode.VOLUME_LIMIT_EXCEEDED)


def test_unknown_route_is_not_found(world):
    status, body = world.call("GET", "/v1/residents")
    _refused(status, body, RefusalCode.NOT_FOUND)


def test_refusals_are_counted_and_unauthorised_ones_separately(world, capfd, caplog):
    world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": ["1"]})
    capfd.readouterr()
    world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": [_valid_unknown_code(world)]})
    out = capfd.readouterr().out
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for doc in metrics for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"ProvisionRefusals", "UnauthorisedAttempts"} <= names
    refusals = [r for r in caplog.records if r.getMessage() == "provision refused"]
    assert [r.code for r in refusals] == ["INVALID_RESIDENT_CODE", "AFFAIR_NOT_AGREED"]


def test_look_up_outside_agreed_hours_is_served_and_flagged(world, capfd):
    r = world.add_residents(1)[0]
    world.now = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.UTC)  # 23:00 JST
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": [r.code]}, who="fsa")
    assert status == 200
    assert '"OutsideAgreedHours"' in capfd.readouterr().out


# --- batch ----------------------------------------------------------------------------------------


def _upload(world, key: str, lines: list[str]) -> None:
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())


def test_batch_provision_end_to_end_with_an_outcome_per_row(world, monkeypatch):
    from jukinet.services import provision_batch

    monkeypatch.setattr(provision_batch, "CHUNK_ROWS", 4)
    rs = world.add_residents(6)
    world.delete_resident(rs[5], sequence=200)
    bad = rs[0].code[:-1] + str((int(rs[0].code[-1]) + 1) % 10)
    rows = ["resident_code", *_codes(rs), bad, _valid_unknown_code(world)]
    _upload(world, "in/pension/2026-11.csv", rows)
    status, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/2026-11.csv"})
    assert status == 202, body
    job_id = body["job_id"]
    world.run_batch_queue()
    status, job = world.call("GET", f"/v1/batches/{job_id}")
    assert status == 200 and job["status"] == "complete", job
    assert job["rows"] == 8 and job["chunks"] == 2
    assert job["outcomes"] == {"provided": 5, "deleted": 1, "not_found": 1, "invalid_code": 1, "code_changed": 0}
    lines = []
    for key in job["result_keys"]:
        text = world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read().decode()
        lines += [json.loads(x) for x in text.splitlines()]
    assert [x["row"] for x in lines] == list(range(1, 9))
    assert all(set(x["facts"]) <= {"resident_code", "status", "change_information"} for x in lines)
    assert lines[6]["outcome"] == "invalid_code"
    for r in rs:
        (entry,) = _entries(world, r.code)
        assert entry.content["function"] == "batch" and entry.content["provision_id"] == body["provision_id"]


def test_a_batch_chunk_delivered_twice_counts_once(world, monkeypatch):
    from jukinet.handlers import provision_api

    rs = world.add_residents(2)
    _upload(world, "in/pension/a.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/a.csv"})
    world.run_batch_queue()
    with world.environment():
        _, batch = provision_api.runtime()
        batch.chunk(body["job_id"], 0, 1, _codes(rs))  # a redelivery after completion
    _, job = world.call("GET", f"/v1/batches/{body['job_id']}")
    assert job["outcomes"]["provided"] == 2 and job["chunks_done"] == 1


def test_batch_refusals(world):
    world.add_residents(1)
    _upload(world, "in/fsa/x.csv", ["1"])
    status, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/fsa/x.csv"})
    assert _refused(status, body, RefusalCode.INVALID_REQUEST)["field"] == "input_key"  # another recipient's prefix
    status, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/none.csv"})
    assert _refused(status, body, RefusalCode.INVALID_REQUEST)["rule"] == "exists"
    status, body = world.call("POST", "/v1/batches", {"affair_code": "BANK", "input_key": "in/fsa/x.csv"}, who="fsa")
    _refused(status, body, RefusalCode.FUNCTION_NOT_AGREED)


def test_a_batch_over_the_agreements_size_fails_with_the_code_and_provides_nothing(world):
    rs = world.add_residents(6)
    _upload(world, "in/pension/big.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "SMALL", "input_key": "in/pension/big.csv"})
    world.run_batch_queue()
    _, job = world.call("GET", f"/v1/batches/{body['job_id']}")
    assert job["status"] == "failed" and job["error"]["code"] == "REQUEST_TOO_LARGE"
    assert all(_entries(world, r.code) == [] for r in rs)


def test_a_job_is_visible_only_to_its_recipient(world):
    rs = world.add_residents(1)
    _upload(world, "in/pension/a.csv", _codes(rs))
    _, body = world.call("POST", "/v1/batches", {"affair_code": "ALIVE", "input_key": "in/pension/a.csv"})
    status, answer = world.call("GET", f"/v1/batches/{body['job_id']}", who="fsa")
    _refused(status, answer, RefusalCode.NOT_FOUND)


# --- disclosure -----------------------------------------------------------------------------------


def test_disclosure_lists_every_provision_of_the_resident_with_the_chain_verified(world):
    r = world.add_residents(1)[0]
    world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})
    world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": [r.code]}, who="fsa")
    world.call("POST", "/v1/lookups", {"affair_code": "PASSPORT", "resident_codes": [r.code]}, who="pref-own-use",
               vpce="vpce-0f000000000000200")
    status, body = world.call("GET", f"/v1/disclosures/{r.code}", who="pref-disclosure",
                              query={"from": "2026-11-01", "to": "2026-11-30"})
    assert status == 200, body
    assert [(p["recipient_id"], p["function"]) for p in body["provisions"]] == [
        ("pension", "lookup"), ("fsa", "lookup"), ("pref", "own_use")]
    assert body["provisions"][1]["fields"] == ["address", "name", "resident_code"]
    assert body["chain"] == {"entries": 3, "verified": True, "problems": [], "unsealed_days": ["2026-11-26"]}
    _, empty = world.call("GET", f"/v1/disclosures/{r.code}", who="pref-disclosure",
                          query={"from": "2026-12-01", "to": "2026-12-31"})
    assert empty["provisions"] == []


def test_disclosure_is_only_for_prefecture_disclosure_staff(world):
    r = world.add_residents(1)[0]
    status, body = world.call("GET", f"/v1/disclosures/{r.code}")
    _refused(status, body, RefusalCode.DISCLOSURE_NOT_PERMITTED)


def test_monthly_statistics_count_records_per_recipient_affair_and_function(world):
    rs = world.add_residents(3)
    world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": _codes(rs)})
    world.call("POST", "/v1/lookups", {"affair_code": "BANK", "resident_codes": _codes(rs[:1])}, who="fsa")
    stats = world.log().statistics("2026-11", ["pension", "fsa", "pref"])
    assert stats == {("pension", "PAY", "lookup"): 3, ("fsa", "BANK", "lookup"): 1}


def test_session_arn_maps_to_the_configured_role_whatever_the_session_name():
    from jukinet.domain.agreements import principal_key

    assert principal_key(session("pension")) == principal_key(f"arn:aws:iam::{ACCOUNT}:role/agencies/pension")
    assert principal_key(f"arn:aws:sts::{ACCOUNT}:assumed-role/pension/other") == principal_key(session("pension"))
    assert principal_key("arn:aws:sts::999999999999:assumed-role/pension/x") != principal_key(session("pension"))


def test_scan_signals_count_unknown_and_consecutive_codes(world, capfd):
    from jukinet.domain.codes import ResidentCode
    from jukinet.domain.scan import near_codes

    walk = [ResidentCode.from_body(f"{b:010d}").value for b in range(5_000_000_000, 5_000_000_005)]
    assert near_codes(walk) == 5
    assert near_codes([walk[0], walk[2], walk[4]]) == 3  # every second code is a walk too
    status, _ = world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": walk})
    assert status == 200
    docs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    served = next(d for d in docs if "NotFoundAnswers" in d)
    assert served["NotFoundAnswers"] == [5.0] and served["SequentialCodes"] == [5.0]


def test_disclosure_of_a_chain_with_a_garbled_entry_lists_it_and_fails_verification(world):
    r = world.add_residents(1)[0]
    world.call("POST", "/v1/lookups", {"affair_code": "PAY", "resident_codes": [r.code]})
    item = world.ddb.get_item(TableName=world.log_table, Key={"pk": {"S": f"P#{r.code}"}, "sk": {"S": "E#00000001"}})
    content = json.loads(item["Item"]["content"]["S"])
    content["at"] = "yesterday-ish"
    world.ddb.put_item(TableName=world.log_table, Item={**item["Item"], "content": {"S": json.dumps(content)}})
    status, body = world.call("GET", f"/v1/disclosures/{r.code}", who="pref-disclosure")
    assert status == 200
    assert [p["date"] for p in body["provisions"]] == [""]
    assert body["chain"]["verified"] is False and "edited" in body["chain"]["problems"][0]
