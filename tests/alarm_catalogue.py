"""Every alarm kind of the deployment: its trigger, its bound (as synthesized) and the tests that
fire it on its trigger and keep it quiet through normal traffic (issue 19: "for every alarm, one
test that fires it on its trigger, and one that keeps it quiet through a normal month that
includes out-of-order and duplicate delivery").

Data only. A kind is ``alarm_kind(AlarmName)`` (``infra/components/monitoring.py``), the heading
``### `<kind>` `` of its runbook section. ``bound`` is what ``tests/infra/test_alarm_catalogue.py``
derives from the synthesized alarm (statistic or expression, comparison, threshold, period,
datapoints of evaluation periods, missing data) in every deployment; tests are pytest node ids
``path::function`` (a parametrised test without its brackets). That test fails when a
synthesized kind has no entry, an entry lacks a fire or a quiet test, a named test does not
exist, or a bound differs. To add an alarm: add its entry here with its two tests (docs/operations.md,
"Alarm catalogue").
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    trigger: str
    bound: str
    fire: tuple[str, ...]
    quiet: tuple[str, ...]


# --- shared tests --------------------------------------------------------------------------------
# Every alarm of the deployed (compact) Nagano assembly evaluated after a normal stretch with
# out-of-order and duplicate delivery: none in ALARM.
NORMAL_STRETCH = ("tests/e2e/test_normal_month_local.py::"
                  "test_a_normal_stretch_with_out_of_order_and_duplicate_delivery_keeps_every_alarm_quiet")
# A message in each dead-letter queue, a failing run of each watched function: each its alarm.
DEAD_LETTERS_AND_ERRORS = (
    "tests/e2e/test_normal_month_local.py::"
    "test_a_message_in_each_dead_letter_queue_and_a_failed_run_of_each_function_fire_their_alarms")
# Metrics only AWS publishes, put into the embedded CloudWatch as AWS would: each its alarm.
AWS_PUBLISHED = ("tests/e2e/test_normal_month_local.py::"
                 "test_metrics_only_aws_publishes_fire_their_alarms_and_a_silent_sealer_raises_its_heartbeat")
VOLUME = ("tests/e2e/test_normal_month_local.py::"
          "test_a_recipients_day_far_above_its_trailing_level_fires_its_volume_anomaly_alarm")
# A month of the system's own CloudTrail management events, each twice, shuffled: no trail filter matches.
TRAIL_QUIET = ("tests/infra/test_security_monitoring.py::"
               "test_a_normal_month_of_the_systems_management_events_matches_no_trail_filter")
CIS_FIRE = ("tests/infra/test_security_monitoring.py::"
            "test_each_cis_pattern_names_the_benchmarks_events_and_matches_exactly_its_trigger")
LEDGER = "tests/local/test_alarms_with_meaning.py::"
LEDGER_QUIET = LEDGER + "test_a_normal_month_with_out_of_order_and_duplicate_delivery_raises_neither_alarm"
PROVISION_E2E = ("tests/e2e/test_provision_local.py::"
                 "test_alarms_stay_quiet_on_normal_traffic_and_fire_on_exactly_the_attack")
NETWORK = "tests/local/test_network_watch.py::"
NETWORK_E2E = "tests/e2e/test_network_watch_local.py::"
CARD = "tests/card/test_card_alarms.py::"
STATS = "tests/provision/test_stats_check.py::"
MONITORING = "tests/local/test_monitoring.py::"

ANY_5_MIN = "Sum > 0 in 5 min"
QUEUE_WAITING = "Maximum > 0 in 5 min"


def _cis(trigger: str) -> Entry:
    return Entry(trigger, ANY_5_MIN, (CIS_FIRE,), (TRAIL_QUIET, NORMAL_STRETCH))


CATALOGUE: dict[str, Entry] = {
    # --- processing tiers (national, each prefecture) -------------------------------------------
    "inbound-dlq-not-empty": Entry(
        "a message the tier's processor could not process (malformed, unverifiable) waits in the inbound "
        "dead-letter queue", QUEUE_WAITING,
        (DEAD_LETTERS_AND_ERRORS,
         MONITORING + "test_service_metrics_are_opt_in_and_feed_the_queue_and_function_alarms"),
        (NORMAL_STRETCH,)),
    "inbound-oldest-message-age": Entry(
        "the inbound queue's oldest message has waited longer than oldest_message_alarm_seconds (900 s)",
        "Maximum > 900 in 5 min, 2 of 2 periods", (AWS_PUBLISHED,), (NORMAL_STRETCH,)),
    "processor-errors": Entry(
        "an invocation of the tier's processor failed (the whole batch raised)", ANY_5_MIN,
        (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    "processor-throttles": Entry(
        "the tier's processor was throttled in each of three periods", "Sum > 0 in 5 min, 3 of 3 periods",
        (AWS_PUBLISHED,), (NORMAL_STRETCH,)),
    "sequence-gaps": Entry(
        "a gap in a municipality's sequence numbers open 15 minutes or more (AgedSequenceGaps, from the ledger)",
        ANY_5_MIN,
        (LEDGER + "test_sequence_gaps_fires_on_a_gap_older_than_15_minutes_and_clears_when_it_closes",
         LEDGER + "test_the_processor_reports_an_aged_gap_when_a_later_message_arrives"),
        (LEDGER_QUIET, NORMAL_STRETCH)),
    "notices-overdue": Entry(
        "a CS counted more notices sent than the tier stored or dead-lettered, 15 minutes after its last file "
        "(a lost last message)", ANY_5_MIN,
        (LEDGER + "test_notices_overdue_fires_when_the_last_message_is_lost_and_nothing_shows_a_gap",
         LEDGER + "test_notices_overdue_at_the_national_tier_when_a_forward_is_lost"),
        (LEDGER_QUIET, NORMAL_STRETCH)),
    "reconciliation-mismatches": Entry(
        "the nightly reconciliation found a municipality-month that does not balance", ANY_5_MIN,
        ("tests/local/test_reconciliation_schedule.py::"
         "test_a_month_that_does_not_balance_raises_the_prefectures_alarm_and_the_report_names_it",),
        ("tests/local/test_reconciliation_schedule.py::"
         "test_a_balanced_month_with_duplicates_and_out_of_order_delivery_stays_quiet", NORMAL_STRETCH)),
    "signature-failures": Entry(
        "a message failed signature verification or came from an unknown sender", ANY_5_MIN,
        (MONITORING + "test_a_forged_message_raises_exactly_the_prefectures_signature_alarm",
         MONITORING + "test_signature_failures_alarm_fires_on_a_failure_and_stays_ok_on_normal_traffic"),
        (NORMAL_STRETCH,
         MONITORING + "test_signature_failures_alarm_fires_on_a_failure_and_stays_ok_on_normal_traffic")),
    # --- municipality tier: the CSs ------------------------------------------------------------
    "cs-failed-events-dlq-not-empty": Entry(
        "a drop-zone event the CS could not process after its retries waits in the failed-events queue",
        QUEUE_WAITING, (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    "cs-errors": Entry(
        "a failed invocation of any CS function of the group (up to ten per alarm)",
        "SUM(FILL(METRICS(), 0)) > 0 in 5 min", (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    "cs-throttles": Entry(
        "CS functions of the group throttled in each of three periods",
        "SUM(FILL(METRICS(), 0)) > 0 in 5 min, 3 of 3 periods", (AWS_PUBLISHED,), (NORMAL_STRETCH,)),
    # --- municipality tier: the channel between municipalities (decision 0041) -----------------
    "channel-dlq-not-empty": Entry(
        "a channel message the tier's channel function could not deliver (unverifiable, past its deadline, "
        "not openable here, a reused correlation id) waits in the channel dead-letter queue",
        QUEUE_WAITING, (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    "channel-dead-letters": Entry(
        "the tier's channel function dead-lettered a channel message with its reason (ChannelDeadLettered, once "
        "per content; decision 0047)", ANY_5_MIN,
        ("tests/channel/test_channel_alarms.py::"
         "test_a_dead_letter_at_the_home_tier_fires_channel_dead_letters_and_the_timeout_is_counted",),
        ("tests/channel/test_channel_alarms.py::"
         "test_normal_traffic_delivered_twice_keeps_channel_dead_letters_quiet", NORMAL_STRETCH)),
    "channel-errors": Entry(
        "an invocation of the tier's channel function failed (the whole batch raised)", ANY_5_MIN,
        (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    # --- municipality tier: the counter API (docs/card.md) --------------------------------------
    "card-authentication-refusals": Entry(
        "more than 10 card authentications refused across the tier's counters (replays, relays, wrong keys)",
        "Sum > 10 in 5 min", (CARD + "test_each_card_alarm_fires_on_its_attack",),
        (CARD + "test_a_normal_day_at_the_counters_keeps_the_card_alarms_quiet", NORMAL_STRETCH)),
    "ended-card-presented": Entry(
        "a suspended or revoked card presented at a counter", ANY_5_MIN,
        (CARD + "test_each_card_alarm_fires_on_its_attack",),
        (CARD + "test_a_normal_day_at_the_counters_keeps_the_card_alarms_quiet", NORMAL_STRETCH)),
    "card-unauthorised-attempts": Entry(
        "a caller refused by the counter API (unknown role or endpoint, another municipality's card, a cloned key), "
        "or a carry-over of one of the tier's cards to another tier refused (no completed special move-out there)",
        ANY_5_MIN, (CARD + "test_each_card_alarm_fires_on_its_attack",
                    "tests/card_across/test_special_move.py::"
                    "test_attack_a_card_pulled_without_a_move_raises_the_old_homes_unauthorised_attempts_alarm"),
        (CARD + "test_a_normal_day_at_the_counters_keeps_the_card_alarms_quiet", NORMAL_STRETCH,
         "tests/card_across/test_special_move.py::"
         "test_a_special_move_across_prefectures_keeps_the_old_homes_card_alarms_quiet")),
    "counter-api-errors": Entry(
        "the counter API answered 5XX", ANY_5_MIN, (AWS_PUBLISHED,), (NORMAL_STRETCH,)),
    # --- the provision API (national; docs/provision.md) ----------------------------------------
    "provision-unauthorised-attempts": Entry(
        "the provision API refused a request for facts the caller is not entitled to", ANY_5_MIN,
        (PROVISION_E2E,), (PROVISION_E2E, NORMAL_STRETCH)),
    "provision-gateway-refusals": Entry(
        "API Gateway refused a provision call before the handler (access-log status 403)", ANY_5_MIN,
        (PROVISION_E2E,), (PROVISION_E2E, NORMAL_STRETCH)),
    "provision-api-errors": Entry(
        "the provision API answered 5XX", ANY_5_MIN, (AWS_PUBLISHED,), (NORMAL_STRETCH,)),
    "provision-batch-dlq-not-empty": Entry(
        "a batch chunk that kept failing waits in the provision batch dead-letter queue", QUEUE_WAITING,
        (DEAD_LETTERS_AND_ERRORS,), (NORMAL_STRETCH,)),
    "provision-sealer-errors": Entry(
        "a run of the provision log's hourly sealer failed", ANY_5_MIN, (DEAD_LETTERS_AND_ERRORS,),
        (NORMAL_STRETCH,)),
    "provision-log-not-sealed": Entry(
        "no seal reported in two hours (the sealer stopped, throttled, failing, or sealing nothing)",
        "Sum < 1 in 60 min, 2 of 2 periods, missing data breaches", (AWS_PUBLISHED,),
        (NORMAL_STRETCH,
         "tests/provision/test_log_trust.py::test_the_sealer_reports_every_run_even_with_nothing_to_seal")),
    "provision-sealer-throttled": Entry(
        "the sealer was throttled (its concurrency set to 0 stops it)", ANY_5_MIN, (AWS_PUBLISHED,),
        (NORMAL_STRETCH,)),
    "provision-outside-agreed-hours": Entry(
        "a look-up outside its agreement's agreed hours (served and flagged)", ANY_5_MIN,
        ("tests/provision/test_api.py::test_look_up_outside_agreed_hours_is_served_and_flagged",),
        (PROVISION_E2E, NORMAL_STRETCH)),
    "provision-sequential-codes": Entry(
        "at least 20 looked-up resident codes with consecutive bodies", "Sum >= 20 in 5 min",
        (PROVISION_E2E,), (PROVISION_E2E, NORMAL_STRETCH)),
    "provision-not-found-ratio": Entry(
        "more than half of at least 50 provision answers were 'not found' (probing with made-up codes)",
        "IF((found + missing) >= 50, 100 * missing / (found + missing), 0) > 50 in 15 min",
        (PROVISION_E2E,), (PROVISION_E2E, NORMAL_STRETCH)),
    "provision-volume-anomaly": Entry(
        "a recipient's daily records far above its own trailing level (one alarm per recipient)",
        "Sum above the anomaly band (3 standard deviations) in 1 day", (VOLUME,), (VOLUME, NORMAL_STRETCH)),
    "provision-isolated-recipient-calls": Entry(
        "a recipient isolated under the emergency plan called with its own principal", ANY_5_MIN,
        ("tests/provision/test_api_threats.py::"
         "test_isolated_agency_is_refused_with_another_recipients_key_and_raises_the_alarm_metric",),
        (NORMAL_STRETCH,)),
    "provision-scan-suspected": Entry(
        "one recipient's recent requests look like a walk through the resident-code space", ANY_5_MIN,
        (PROVISION_E2E,
         "tests/provision/test_api_threats.py::test_a_walk_through_consecutive_codes_one_per_request_is_detected"),
        (PROVISION_E2E, "tests/provision/test_api_threats.py::test_a_client_retrying_the_same_codes_is_not_a_scan",
         NORMAL_STRETCH)),
    "provision-stats-mismatch": Entry(
        "the month's provision statistics differ from the sealed provision log (checked at the month's end)",
        ANY_5_MIN,
        (STATS + "test_a_counter_tampered_with_is_reported_by_the_sealer_at_the_months_end",
         STATS + "test_a_log_entry_removed_under_a_counter_is_a_mismatch"),
        (STATS + "test_a_normal_month_checks_equal_and_the_sealer_reports_zero", NORMAL_STRETCH)),
    # --- people and the network (every tier) ----------------------------------------------------
    "break-glass-used": Entry(
        "the account trail recorded an AssumeRole of the tier's break-glass role", ANY_5_MIN,
        ("tests/infra/test_responsibility.py::"
         "test_the_break_glass_filter_matches_cloudtrails_assume_role_event_with_or_without_the_path",),
        (TRAIL_QUIET, NORMAL_STRETCH)),
    "flow-log-rejects": Entry(
        "the tier's VPC flow log recorded a rejected connection", ANY_5_MIN,
        (NETWORK + "test_a_connection_on_a_port_other_than_443_is_refused_and_raises_rejects",
         NETWORK_E2E + "test_a_deployed_function_connecting_out_of_its_vpc_raises_both_alarms_of_its_tier_only"),
        (NETWORK + "test_a_normal_month_of_endpoint_traffic_keeps_both_flow_log_alarms_quiet",
         NETWORK_E2E + "test_normal_traffic_through_the_tiers_is_recorded_and_keeps_the_flow_log_alarms_quiet")),
    "flow-log-leaving-vpc": Entry(
        "the tier's VPC flow log recorded traffic to an address outside the VPC that is no endpoint's service",
        ANY_5_MIN,
        (NETWORK + "test_a_call_to_a_service_without_an_endpoint_raises_leaving_vpc",
         NETWORK_E2E + "test_a_deployed_function_connecting_out_of_its_vpc_raises_both_alarms_of_its_tier_only"),
        (NETWORK + "test_a_normal_month_of_endpoint_traffic_keeps_both_flow_log_alarms_quiet",
         NETWORK_E2E + "test_normal_traffic_through_the_tiers_is_recorded_and_keeps_the_flow_log_alarms_quiet")),
    "dns-outside-endpoint-zones": Entry(
        "a function of the tier resolved a name outside the region's service zones", ANY_5_MIN,
        (NETWORK + "test_a_function_resolving_a_public_name_raises_the_dns_alarm_and_its_connection_leaving",
         NETWORK + "test_dns_name_outside_the_regions_zone_raises_the_alarm"),
        (NETWORK + "test_dns_names_of_the_regions_service_zones_stay_quiet_for_a_month",
         NETWORK_E2E + "test_normal_traffic_through_the_tiers_is_recorded_and_keeps_the_flow_log_alarms_quiet")),
    # --- the account trail (CIS AWS Foundations 4.x, and key administration) ---------------------
    "cis-unauthorized-api-calls": _cis("a call refused with UnauthorizedOperation or AccessDenied"),
    "cis-console-sign-in-without-mfa": _cis("a successful IAM-user console sign-in without MFA"),
    "cis-root-account-usage": _cis("the root user acted (not a service on its behalf)"),
    "cis-iam-policy-changes": _cis("an IAM policy created, changed, attached or detached"),
    "cis-cloudtrail-changes": _cis("a trail created, updated, deleted, started or stopped"),
    "cis-console-sign-in-failures": _cis("a failed console authentication"),
    "cis-kms-key-disabled-or-deleted": _cis("a customer managed key disabled or scheduled for deletion"),
    "cis-s3-bucket-policy-changes": _cis("a bucket policy, ACL, CORS, lifecycle or replication changed"),
    "cis-config-changes": _cis("the AWS Config recorder or delivery channel changed or stopped"),
    "cis-security-group-changes": _cis("a security group created, deleted or its rules changed"),
    "cis-nacl-changes": _cis("a network ACL or its entries changed"),
    "cis-network-gateway-changes": _cis("a customer or internet gateway created, attached or deleted"),
    "cis-route-table-changes": _cis("a route or route table changed (EC2)"),
    "cis-vpc-changes": _cis("a VPC, its attributes or a peering changed"),
    "kms-key-policy-or-alias-changes": Entry(
        "a KMS key policy rewritten or an alias created, re-pointed or deleted", ANY_5_MIN,
        ("tests/infra/test_security_monitoring.py::test_key_policy_and_alias_changes_raise_an_alarm_on_every_trail",),
        (TRAIL_QUIET, NORMAL_STRETCH)),
}

# Kinds without a fire or a quiet test yet: kind -> why. tests/infra/test_alarm_catalogue.py
# fails when a kind here gets an entry above (remove it here) or is no longer synthesized.
KNOWN_GAPS: dict[str, str] = {}
