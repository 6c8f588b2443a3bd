"""bench/projection.py: the arithmetic of the national-scale projection is checkable and right."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from ..projection import load_projection

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "projection.py"




p = load_projection()


# --- DynamoDB bills units, not calls ---------------------------------------------------------------------------


def test_write_units_round_up_per_kilobyte_and_reads_per_four():
    assert p.wru_for(0.5) == 1 and p.wru_for(1.0) == 1 and p.wru_for(1.01) == 2 and p.wru_for(3) == 3
    assert p.rru_for(0.8) == 1 and p.rru_for(4.1) == 2 and p.rru_for(0.8, consistent=False) == 0.5
    assert p.wru_for(p.CURRENT_ITEM_BYTES / 1024) == 1  # the measured current item is under 1 KB


def test_a_look_up_costs_the_designed_calls_and_units():
    one = p.lookup_units(1)
    assert one["calls"] == 3  # state snapshot and identity together, one transaction, the confirmation (0056)
    assert one["rru"] == 4 + 1 + 1  # isolation, statistics, two scan slots; the head; the resident
    # transactional: entry, head, statistics, scan slot; index entry; the confirmation
    assert one["wru"] == 2 * (1 + 1 + 2) + 1 + 1
    hundred = p.lookup_units(100)
    assert hundred["calls"] == 3 + 3 + 1  # 104 state keys and 100 identity keys, 202 actions, the confirmation
    assert hundred["calls"] <= 100 / 10  # issue 13: at most one request per 10 records
    assert hundred["rru"] == 4 + 2 * 100
    assert hundred["wru"] == 2 * (2 * 100 + 2) + 100 + 1
    chunk = p.lookup_units(1000, together=False)  # a batch chunk reads its heads and residents apart
    assert chunk["calls"] == 11 + 10 + 21 + 1


def test_a_transaction_holds_at_most_100_actions():
    units = {k: p.lookup_units(k) for k in (49, 50)}
    assert units[50]["calls"] == units[49]["calls"] + 1  # 102 actions: a second transaction
    assert units[50]["wru"] - units[49]["wru"] == 2 * 2 + 1  # entry + head, transactional; index entry


def test_the_notice_pipeline_counts_items_not_transaction_calls():
    load = p.SCENARIOS[2]
    c = p.calls(load)
    wru, _ = p.notice_wru_rru(c, load.notices, load.notices_per_message)
    transactions = c[("dynamodb", "TransactWriteItems", "prefecture")] + c[("dynamodb", "TransactWriteItems", "national")]
    assert 2 * load.notices > 20 * transactions
    # two processing tiers × (history 2 + current 2 as transactional writes + its index entry 1), ledgers, the CS
    # and its local-record entry (2 as a transactional write + its household index entry 1; decision 0044)
    assert 13.0 < wru / load.notices < 13.5


def test_the_initial_load_drains_in_under_six_hours_inside_default_quotas():
    load = p.SCENARIOS[2]
    assert p.notice_hours(load) < 6
    assert p.national_rate(load) * p.wru_per_notice_national(load) <= p.QUOTAS["ddb_table_wru_per_s"].value * 1.0001
    assert p.paced_signs_per_s(load) < p.QUOTAS["kms_ecc_per_s"].value


# --- scaling the measured counts ---------------------------------------------------------------------------------


def test_at_the_measured_sizes_the_measured_rates_come_back():
    measured = p.NoticeScenario("measured", p.MEASURED_NOTICES, p.MEASURED_NOTICES / p.MEASURED_MESSAGES,
                                p.MEASURED_NOTICES / p.MEASURED_FILES)
    c = p.calls(measured)
    for m in p.MEASURED_PER_1000:
        assert c[(m.service, m.op, m.caller)] == pytest.approx(m.per_1000 * p.MEASURED_NOTICES / 1000)


def test_bigger_messages_and_files_need_fewer_per_message_calls_but_as_many_transactions():
    month, load = p.SCENARIOS[0], p.SCENARIOS[2]
    cm, cl = p.calls(month), p.calls(load)
    assert cl[("kms", "Sign", "cs")] / load.notices < cm[("kms", "Sign", "cs")] / month.notices / 10
    assert cl[("dynamodb", "TransactWriteItems", "national")] / load.notices == pytest.approx(
        cm[("dynamodb", "TransactWriteItems", "national")] / month.notices)


def test_the_copied_rows_add_up_to_the_measured_totals():
    total = {svc: sum(m.per_1000 for m in p.MEASURED_PER_1000 if m.service == svc and m.caller != "poller")
             for svc in ("dynamodb", "kms", "s3")}
    # 170.7 measured on 2026-12-03, less one CS GetItem per file (12.4): since decision 0051 the CS
    # reads a batch's file records with one BatchGetItem and the counter once (per file: a lone file)
    assert total["dynamodb"] == pytest.approx(170.7 - 12.4, abs=0.2)
    assert total["kms"] == pytest.approx(22.6, abs=0.3)
    assert total["s3"] == pytest.approx(37.1, abs=0.1)


# --- fixed cost -------------------------------------------------------------------------------------------------


def test_fixed_counts_scale_with_municipalities_and_prefectures():
    more = p.Shape(1, (p.NAGANO_MUNICIPALITIES + 1,), 1, 5, 1)
    assert p.kms_keys(more) - p.kms_keys(p.NAGANO) == 1  # one signing key per municipality
    assert p.alarm_counts(more)[1] - p.alarm_counts(p.NAGANO)[1] == 2  # its errors and throttles
    assert p.endpoint_azs(more) == p.endpoint_azs(p.NAGANO)  # the municipality tier shares one VPC
    assert p.reserved_concurrency(p.NAGANO_MUNICIPALITIES + 1, 1) - p.reserved_concurrency(p.NAGANO_MUNICIPALITIES, 1) \
        == p.CS_RESERVED_CONCURRENCY
    # municipality tiers in one AZ: each of their interface endpoints in one subnet instead of two
    assert p.endpoint_azs(p.COUNTRY, muni_azs=1) == p.endpoint_azs(p.COUNTRY) - p.PREFECTURES * len(
        p.INTERFACE_ENDPOINTS["municipality_tier"])
    # The counts per tier (KMS keys, endpoints, alarms and their metrics, dashboards, functions with their memory
    # and reserved concurrency, event sources) and the country's, each tier scaled, come from a real synth of
    # nagano-demo, not from these constants: tests/infra/test_projection_counts.py.


def test_the_country_has_47_prefectures_and_1741_municipalities():
    assert len(p.MUNICIPALITIES_BY_PREFECTURE) == p.PREFECTURES == 47
    assert sum(p.MUNICIPALITIES_BY_PREFECTURE) == p.MUNICIPALITIES == 1741
    assert p.MUNICIPALITIES_BY_PREFECTURE[19] == p.NAGANO_MUNICIPALITIES  # Nagano is prefecture 20


def test_fixed_lines_are_count_times_price():
    lines = {name: (count, dollars) for name, count, dollars in p.fixed_lines(p.COUNTRY)}
    count, dollars = lines["interface endpoints (endpoint-AZs × 730 h)"]
    assert dollars == pytest.approx(count * 730 * p.PRICES["vpce_hour"].usd)
    count, dollars = lines["KMS keys (one signing key per municipality)"]
    assert dollars == pytest.approx(count * p.PRICES["kms_key_month"].usd)


def test_one_account_cannot_reserve_the_country_s_concurrency():
    assert p.reserved_concurrency(p.NAGANO_MUNICIPALITIES, 1) < 900
    assert p.reserved_concurrency(p.MUNICIPALITIES, p.PREFECTURES) > 900


# --- KMS data keys ----------------------------------------------------------------------------------------------


def test_decrypts_vanish_once_the_cache_holds_every_data_key():
    keys = max(p.distinct_data_keys_after_load(), p.data_keys_a_year())
    assert p.decrypt_miss_rate(cache=math.ceil(keys)) == 0
    assert 0.5 < p.decrypt_miss_rate(cache=256) < 1  # the writers' 256 cached keys against ~1,250 of the load
    assert p.decrypt_miss_rate() == 0  # the provision functions keep 65,536


# --- prices and the report ---------------------------------------------------------------------------------------


def test_every_price_names_its_source_and_date_and_non_tokyo_prices_say_so():
    for key, price in p.PRICES.items():
        assert price.url.startswith("http"), key
        assert price.dated, key
        if not price.tokyo:
            assert any(w in price.dated for w in ("assumption", "unverified", "all regions", "free")), key


def test_the_report_prints_the_four_tables_and_the_sources(capsys):
    assert p.main(["--format", "markdown", "--sources"]) == 0
    out = capsys.readouterr().out
    for heading in ("(i) Variable cost and time", "(ii) Where the first limit bites", "(iii) Fixed monthly cost",
                    "(iv) Where the fixed cost can be cut", "Sources", "Assumptions"):
        assert f"#### {heading}" in out
    assert "a 79-million-record alive check" in out and "¥3.228 billion" in out


def test_the_script_runs_on_its_own():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True)
    assert "FIXED TOTAL" in result.stdout


def test_docs_embed_the_script_s_current_output():
    doc = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    assert p.report("markdown") in doc, "rerun bench/projection.py --format markdown and update docs/performance.md"
    assert p.sources("markdown") in doc and p.assumptions("markdown") in doc
