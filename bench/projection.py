"""Projection to national scale: time and cost in Tokyo, the first limit to bite, the fixed cost.

    .venv/bin/python bench/projection.py                     # plain text
    .venv/bin/python bench/projection.py --format markdown   # what docs/performance.md embeds
    .venv/bin/python bench/projection.py --yen-per-usd 145   # another exchange rate

No AWS call and no network: every figure is arithmetic on the named constants below, so it can be
checked by hand. The constants are of four kinds, each saying where it comes from:

* ``PRICES`` — AWS list prices for Tokyo (ap-northeast-1) with the URL and date of the page or
  stored copy they were read from (or an explicit assumption where no Tokyo price was found);
* ``QUOTAS`` — documented service quotas, same;
* ``MEASURED_*`` — copied from the measured table in docs/performance.md (``bench/run.py``, run of
  2026-11-26), plus three figures measured once for this projection (method stated beside each);
* design constants — read off the code (``lambdas/``, ``infra/``), each naming its file.

Assumptions that are neither price, quota, measurement nor code are in ``ASSUMPTIONS`` and are
printed with the output.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

# --- money -----------------------------------------------------------------------------------------------------

YEN_PER_USD = 150.0  # assumption; stored copies of a Tokyo price calculator (aws-rough.cc) showed ¥143–153/$
HOURS_PER_MONTH = 730  # AWS's own convention in its price examples
JUKINET_2002_YEN_PER_YEAR = 3_228_000_000  # the 2002 estimate of Juki-net's operating cost (issue 6)

PRICE_LIST = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{}/current/ap-northeast-1/index.json"
VIA_COPY = ("Tokyo Price List value (usagetype {}) as transcribed in stored public copies, not fetched by us; "
            "copy: {}")


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    what: str
    url: str
    dated: str  # the date the page or stored copy shows, or an honest note that it shows none
    tokyo: bool = True  # False: a price for another region or a global price, used for Tokyo by assumption


PRICES: dict[str, Price] = {
    "lambda_gb_s_arm": Price(
        0.0000133334, "GB-second", "Lambda duration, arm64 (first tier)", PRICE_LIST.format("AWSLambda"),
        VIA_COPY.format("APN1-Lambda-GB-Second-ARM", "undated (x86 tier-1 price 0.0000166667 effective 2026-07-01)")),
    "lambda_request": Price(
        0.0000002, "request", "Lambda requests ($0.20 per million)", PRICE_LIST.format("AWSLambda"),
        VIA_COPY.format("APN1-Request", "effective 2026-07-01, queried 2026-07-20")),
    "ddb_wru": Price(
        0.000000715, "write request unit", "DynamoDB on-demand writes ($0.715 per million WRU)",
        PRICE_LIST.format("AmazonDynamoDB"), VIA_COPY.format("APN1-WriteRequestUnits", "2026-09-23")),
    "ddb_rru": Price(
        0.0000001425, "read request unit", "DynamoDB on-demand reads ($0.1425 per million RRU)",
        PRICE_LIST.format("AmazonDynamoDB"), VIA_COPY.format("APN1-ReadRequestUnits", "2026-09-23")),
    "ddb_storage": Price(
        0.285, "GB-month", "DynamoDB Standard storage (first 25 GB free)", PRICE_LIST.format("AmazonDynamoDB"),
        VIA_COPY.format("APN1-TimedStorage-ByteHrs", "undated")),
    "ddb_pitr": Price(
        0.228, "GB-month", "DynamoDB point-in-time recovery", PRICE_LIST.format("AmazonDynamoDB"),
        "no Tokyo value found: us-west-2 Price List value 0.20 (USW2-TimedPITRStorage-ByteHrs, stored copy, "
        "undated) × 1.14, the Tokyo/us-east-1 ratio of storage prices (0.285/0.25) — assumption", tokyo=False),
    "sqs_request": Price(
        0.0000004, "request (64 KB chunk)", "SQS standard ($0.40 per million; each 64 KB of payload is a request)",
        PRICE_LIST.format("AWSQueueService"),
        VIA_COPY.format("APN1-Requests-Tier1", "2026-09-23") + "; 64 KB rule: factualminds.com SQS pricing, "
        "2026-06-13"),
    "kms_key_month": Price(
        1.0, "key-month", "KMS customer managed key (symmetric or asymmetric)", "https://aws.amazon.com/kms/pricing/",
        "stored copy, undated; Tokyo Price List ap-northeast-1-KMS-Keys = 1.0 (copy of 2026-09-23). Each "
        "automatic rotation adds $1/month (symmetric keys only)"),
    "kms_request": Price(
        0.000003, "request", "KMS symmetric requests ($0.03 per 10,000)", PRICE_LIST.format("awskms"),
        VIA_COPY.format("ap-northeast-1-KMS-Requests", "2026-09-23")),
    "kms_asymmetric_request": Price(
        0.000015, "request", "KMS asymmetric (ECC) requests ($0.15 per 10,000)", PRICE_LIST.format("awskms"),
        "no Tokyo value found: Price List 'KMS-Requests-Asymmetric' = 0.000015 for us-east-1 and Sydney "
        "(stored copies, undated), used for Tokyo — assumption; GetPublicKey priced here too (conservative)",
        tokyo=False),
    "s3_put": Price(
        0.0000047, "request", "S3 PUT ($0.0047 per 1,000)", PRICE_LIST.format("AmazonS3"),
        VIA_COPY.format("APN1-Requests-Tier1", "2026-09-18")),
    "s3_get": Price(
        0.00000037, "request", "S3 GET ($0.00037 per 1,000)", PRICE_LIST.format("AmazonS3"),
        VIA_COPY.format("APN1-Requests-Tier2", "2026-09-18")),
    "s3_storage": Price(
        0.025, "GB-month", "S3 Standard storage (first 50 TB)", PRICE_LIST.format("AmazonS3"),
        VIA_COPY.format("APN1-TimedStorage-ByteHrs", "effective 2026-07-01")),
    "vpce_hour": Price(
        0.014, "endpoint-AZ-hour", "VPC interface endpoint, per endpoint per AZ", PRICE_LIST.format("AmazonVPC"),
        VIA_COPY.format("APN1-VpcEndpoint-Hours", "retrieved 2026-09-13")),
    "vpce_gb": Price(
        0.01, "GB", "VPC interface endpoint data processed (first PB)", PRICE_LIST.format("AmazonVPC"),
        VIA_COPY.format("APN1-VpcEndpoint-Bytes", "2026-09-23")),
    "cloudtrail_data_event": Price(
        0.000001, "event", "CloudTrail data events ($0.10 per 100,000); first copy of management events free",
        "https://aws.amazon.com/cloudtrail/pricing/", "stored copy, undated; one price for all regions", tokyo=False),
    "cw_alarm_metric": Price(
        0.10, "alarm metric-month", "CloudWatch standard-resolution alarm", PRICE_LIST.format("AmazonCloudWatch"),
        VIA_COPY.format("APN1-CW:AlarmMonitorUsage", "effective 2026-07-01")),
    "cw_custom_metric": Price(
        0.30, "metric-month", "CloudWatch custom metric (first 10,000)", PRICE_LIST.format("AmazonCloudWatch"),
        VIA_COPY.format("APN1-CW:MetricMonitorUsage", "2026-09-23")),
    "cw_logs_ingest": Price(
        0.76, "GB", "CloudWatch Logs ingestion (standard)", PRICE_LIST.format("AmazonCloudWatch"),
        VIA_COPY.format("APN1-DataProcessing-Bytes", "effective 2026-07-01")),
    "cw_logs_storage": Price(
        0.033, "GB-month", "CloudWatch Logs storage", PRICE_LIST.format("AmazonCloudWatch"),
        VIA_COPY.format("APN1-TimedStorage-ByteHrs", "effective 2026-07-01")),
    "cw_dashboard": Price(
        3.00, "dashboard-month", "CloudWatch dashboard (one per tier stack)",
        "https://www.factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards/",
        "2026-06-13, us-east-1 price used for Tokyo — assumption", tokyo=False),
    "apigw_rest_request": Price(
        0.00000425, "request", "API Gateway REST API, private (first 333 million a month)",
        "https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/"
        "cost-optimization.html",
        "no Tokyo value found: the page (stored copy, undated) gives $3.50 per million for us-east-1; $4.25 "
        "assumes Tokyo's usual ~21% uplift — assumption. Private APIs: no data-transfer charge, PrivateLink applies "
        "(aws.amazon.com/api-gateway/pricing, stored copy, undated)", tokyo=False),
    "xray_trace": Price(
        0.000005, "trace recorded", "X-Ray traces (tracing is ACTIVE on every function)",
        "https://aws.amazon.com/xray/pricing/",
        "not found in the stored sources: $5.00 per million is the us-east-1 price as we recall it — unverified",
        tokyo=False),
    "eventbridge_schedule": Price(
        0.0, "event", "EventBridge scheduled rule (the hourly sealer)",
        "https://www.factualminds.com/blog/amazon-eventbridge-pricing-events-pipes-schema-archive/",
        "2026-06-13: events from AWS services (schedules included) are free", tokyo=False),
}


@dataclass(frozen=True)
class Quota:
    value: float
    unit: str
    url: str
    dated: str


QUOTAS: dict[str, Quota] = {
    "kms_symmetric_per_s": Quota(
        20_000, "requests/s per account, shared by Decrypt/Encrypt/GenerateDataKey… (Tokyo)",
        "https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html",
        "stored copy, undated (the Chinese-language copy lists ap-northeast-1 at 20,000)"),
    "kms_ecc_per_s": Quota(
        300, "requests/s per account, shared by Sign/Verify with ECC keys",
        "https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html",
        "stored copy of the guide's source, undated"),
    "kms_get_public_key_per_s": Quota(
        2_000, "GetPublicKey requests/s per account", "https://docs.aws.amazon.com/kms/latest/developerguide/"
        "requests-per-second.html", "stored copy of the guide's source, undated"),
    "ddb_partition_wru_per_s": Quota(
        1_000, "write units/s per partition (3,000 read units)", "https://repost.aws/knowledge-center/"
        "on-demand-table-throttling-dynamodb", "stored copy, undated"),
    "ddb_table_wru_per_s": Quota(
        40_000, "write units/s per on-demand table (default, adjustable)", "https://docs.aws.amazon.com/amazondynamodb/"
        "latest/developerguide/on-demand-capacity-mode-max-throughput.html", "stored copy, undated"),
    "ddb_new_table_wru_per_s": Quota(
        4_000, "write units/s a new on-demand table sustains at once; then 2x the previous peak per 30 min",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/pre-warming-on-demand-capacity-mode.html",
        "stored copy, undated"),
    "lambda_account_concurrency": Quota(
        1_000, "concurrent executions per account and region (default); 100 must stay unreserved",
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html", "stored copies (re:Post, "
        "undated)"),
    "lambda_scaling_per_10s": Quota(
        1_000, "new execution environments per function every 10 s", "https://docs.aws.amazon.com/lambda/latest/dg/"
        "scaling-behavior.html", "stored copy, undated"),
    "lambda_mb_per_vcpu": Quota(
        1_769, "MB of memory for one vCPU (CPU is proportional to memory)", "https://docs.aws.amazon.com/lambda/"
        "latest/dg/configuration-memory.html", "stored copy, undated"),
    "apigw_account_rps": Quota(
        10_000, "requests/s per account and region (burst 5,000)", "lambdas/jukinet/domain/agreements.py MAX_THROTTLE_RATE",
        "as the configuration records it"),
}

# --- measured: docs/performance.md, "The table as measured" (bench/run.py, 18,692 notices): request counts of
# 2026-12-03 (issue 13); the domain-core µs of 2026-11-26 (an idle machine; the 2026-12-03 runs were under load 11–13)

MEASURED_NOTICES = 18_692
MEASURED_MESSAGES = 237  # "the CS's 237 signed bodies (1.1 MB, 18,692 notices)"
MEASURED_FILES = 231  # "231 files, 279 invocations"
MEASURED_BODY_BYTES = 1_100_000  # the same 237 bodies: 1.1 MB
MEASURED_INVOCATIONS = 279  # 231 CS invocations (one per file) + 48 processor invocations
MEASURED_DOMAIN_US = 24.3  # "end to end (parse + seal + serialise) … 24.3 µs/notice"
MEASURED_PARSE_US = 15.4  # "parse (from_dict) … 15.4 µs"
MEASURED_SERIALISE_US = 5.6  # "serialise (to_dict+json) … 5.6 µs"


@dataclass(frozen=True)
class Measured:
    service: str
    op: str
    caller: str  # cs | prefecture | national | poller
    per_1000: float
    scales: str  # notice | message | file: what the count grows with (read off the code)


MEASURED_PER_1000: tuple[Measured, ...] = (  # bench/run.py of 2026-12-03 09:19 UTC (issue 13's write path)
    # The CS's state table, per batch since decision 0051 (one BatchGetItem of the files, the counter, one
    # reservation and one finish transaction); counted per file, as if each file came alone (a lone file, one a
    # day): an upper bound — the month of 231 files measured 77 batches (docs/performance.md, 2026-12-04).
    Measured("dynamodb", "BatchGetItem", "cs", 12.4, "file"),  # the files' records (was 2 GetItems per file)
    Measured("dynamodb", "GetItem", "cs", 12.4, "file"),  # the counter
    Measured("dynamodb", "TransactWriteItems", "cs", 24.7, "file"),  # 2 per batch (reserve, finish)
    Measured("dynamodb", "BatchGetItem", "national", 20.7, "notice"),  # one read: history, currents, ledgers
    Measured("dynamodb", "GetItem", "national", 4.3, "message"),  # sender pins, blind-index key (per cold start)
    Measured("dynamodb", "PutItem", "national", 4.2, "message"),  # sender pins (conditional, per cold start)
    Measured("dynamodb", "TransactWriteItems", "national", 20.1, "notice"),  # 100 items a call
    Measured("dynamodb", "BatchGetItem", "prefecture", 25.9, "notice"),
    Measured("dynamodb", "GetItem", "prefecture", 4.2, "message"),
    Measured("dynamodb", "PutItem", "prefecture", 4.2, "message"),
    Measured("dynamodb", "TransactWriteItems", "prefecture", 25.3, "notice"),
    Measured("kms", "Sign", "cs", 12.7, "message"),
    Measured("kms", "Decrypt", "national", 0.1, "notice"),
    Measured("kms", "GenerateDataKey", "national", 0.1, "notice"),
    Measured("kms", "GetPublicKey", "national", 4.2, "message"),
    Measured("kms", "Decrypt", "prefecture", 0.1, "notice"),
    Measured("kms", "GenerateDataKey", "prefecture", 0.2, "notice"),
    Measured("kms", "GetPublicKey", "prefecture", 4.1, "message"),
    Measured("kms", "Sign", "prefecture", 1.3, "message"),
    Measured("s3", "GetObject", "cs", 12.4, "file"),
    Measured("s3", "PutObject", "cs", 24.7, "file"),
    Measured("sqs", "DeleteMessageBatch", "poller", 2.6, "message"),
    Measured("sqs", "GetQueueAttributes", "poller", 0.2, "message"),
    Measured("sqs", "ReceiveMessage", "poller", 4.2, "message"),
    Measured("sqs", "SendMessageBatch", "cs", 12.4, "message"),
    Measured("sqs", "SendMessageBatch", "prefecture", 1.3, "message"),
)

# Measured once for this projection on the same 2-core machine (x86-64, Python 3.11.7), 2026-11-26:
CALL_CPU_US = 500  # client CPU of one boto3 DynamoDB PutItem (serialise, SigV4, HTTP, parse) against a loopback
#                    HTTP endpoint answering "{}": thread CPU of 3,000 calls / 3,000 (two runs: 500 and 509 µs)
NOTICES_PER_FULL_MESSAGE = 575  # domain.message.pack() of bench_domain.synthetic_notices(20_000) from one sender:
#                                 35 messages of 558–579 notices (the 180,000-byte JSON cap binds, not the 1,000 cap)
CURRENT_ITEM_BYTES = 671  # a current item as identity_store builds it (sealed facts 229 B mean, wrapped key 184 B,
#                           blind index, order key…), counted as DynamoDB sizes items: under 1 KB, so 1 WRU

# --- design constants read off the code ------------------------------------------------------------------------

AZS = 2  # infra/config/deployments.py DEMO_AZS: two AZs per tier VPC
INTERFACE_ENDPOINTS = {  # infra/stacks/*.py interface_endpoints (S3 and DynamoDB are free gateway endpoints)
    # monitoring, ssm: the monthly monitoring report's reads (CloudWatch, isolation records; decision 0039)
    "national": ("sqs", "kms", "monitoring", "ssm"),
    "prefecture": ("sqs", "kms", "monitoring", "ssm", "execute-api"),  # execute-api only with own-use recipients
    "municipality_tier": ("sqs", "kms", "execute-api"),  # execute-api: the counter API (docs/card.md)
}
SINGLE_AZ_ENDPOINTS = ("monitoring", "ssm")  # infra/stacks/tier.py REPORT_ONLY_ENDPOINTS: a monthly job's, one AZ
KMS_KEYS = {  # per stack, checked against the synthesized nagano-demo by tests/infra/test_projection_counts.py
    "national": 9,  # audit, at-rest, transport, envelope, provision-log, provision-batch, provision-seal (ECC),
    #                 seal archive, security reports
    "prefecture": 6,  # audit, at-rest, transport, envelope, signing (ECC), security reports
    "municipality_tier": 7,  # audit, at-rest, card table, card-event signing (ECC), channel, channel transport,
    #                          local-record table (decision 0044)
    "per_municipality": 1,  # the CS's signing key (ECC), infra/stacks/municipality.py
}
ALARMS = {  # single-metric alarms per stack (tests/infra/test_projection_counts.py; the CS alarms are grouped)
    "national": 45,
    "prefecture": 12,
    "municipality_tier": 12,  # + channel-dlq-not-empty, channel-dead-letters, channel-errors (components/channel.py)
}
ALARM_METRICS = {  # the metrics those alarms watch (a metric-math alarm is priced per metric it evaluates)
    "national": 46,
    "prefecture": 12,
    "municipality_tier": 12,
}
CS_ALARM_METRICS_PER_MUNICIPALITY = 2  # errors and throttles, grouped ten CSs to an alarm (FUNCTIONS_PER_ALARM)
FUNCTIONS_PER_ALARM = 10
MAX_MUNICIPALITIES_PER_STACK = 40  # infra/config/tiers.py DEFAULT_MAX_MUNICIPALITIES_PER_STACK
CUSTOM_METRICS = {  # Powertools metrics, dimensions {service, tier} (lambdas/jukinet/**), and metric filters
    # each tier: + 3 network-watch metric filters (FlowLogRejects, FlowLogLeavingVpc, DnsOutsideEndpointZones);
    # each processing tier: + ReconciliationMismatches. RefusalsByCode (one metric per refusal code that occurs)
    # is not counted, nor is ChannelDeadLettersByReason (one metric per dead-letter reason that occurs).
    # the channel between municipalities (services/channel.py): each router + ChannelRouted,
    # ChannelDeadLettered; each municipality tier's channel function + ChannelRequestsSent, ChannelAnswersSent,
    # ChannelRequestsSettled, ChannelRequestsRepeated, ChannelDeadLettered, ChannelRequestsTimedOut,
    # ChannelRefusalsReceived (decision 0047).
    "prefecture": 5 + 1 + 3 + 2,  # SequenceGaps, NoticesStored, NoticesDuplicate, SignatureFailures,
    #                               NoticesDeadLettered
    "municipality_tier": 3 + 3 + 7,  # DuplicateFiles, NoticesSent, RowsRejected (one service per municipality tier)
    "national": 5 + 12 + 1 + 1 + 3 + 2,  # the processor's five + eleven provision metrics + the gateway-refusals
    #                                      metric filter, ProvisionStatsMismatch
    "per_recipient": 1,  # RecordsProvidedByRecipient
}
DASHBOARDS = {"national": 1, "prefecture": 1, "municipality_tier": 1}  # one per tier stack
# inbound queues; national adds the provision batch queue; each municipality tier its channel queue;
# each municipality its CS's inbox (decision 0051)
SQS_EVENT_SOURCES = {"prefecture": 1, "national": 2, "municipality_tier": 1, "municipality": 1}

# Every function per stack, by handler (jukinet.handlers.<name>): (memory MB, reserved concurrency), checked against
# the synthesized nagano-demo by tests/infra/test_projection_counts.py (functions, memory and reservations alike).
FUNCTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "national": {
        "national_processor": (1024, 5),  # infra/config/tiers.py National.processor_concurrency default
        "provision_api": (1024, 20), "provision_batch": (1024, 10), "provision_sealer": (512, 1),  # stacks/provision.py
        "ledger_watch": (256, 1), "reconciliation": (256, 1), "monitoring_report": (512, 1),  # once a day / month
    },
    "prefecture": {
        "prefecture_processor": (1024, 5),  # infra/config/tiers.py Prefecture.processor_concurrency default
        "ledger_watch": (256, 1), "reconciliation": (256, 1), "monitoring_report": (512, 1),
    },
    "municipality_tier": {  # one per prefecture (its municipalities' tier)
        "card_api": (512, 10),  # the counter API (infra/components/counter.py)
        "channel_endpoint": (512, 5),  # the channel between municipalities (infra/components/channel.py)
    },
    "per_municipality": {
        "municipality_cs": (512, 2),  # infra/config/tiers.py MunicipalityTier.cs_reserved_concurrency default
    },
}
PROCESSOR_MEMORY_MB, PROCESSOR_CONCURRENCY = FUNCTIONS["national"]["national_processor"]
CS_MEMORY_MB, CS_RESERVED_CONCURRENCY = FUNCTIONS["per_municipality"]["municipality_cs"]
CHANNEL_CONCURRENCY = FUNCTIONS["municipality_tier"]["channel_endpoint"][1]
API_MEMORY_MB, API_CONCURRENCY = FUNCTIONS["national"]["provision_api"]
BATCH_MEMORY_MB, BATCH_CONCURRENCY = FUNCTIONS["national"]["provision_batch"]
SEALER_CONCURRENCY = FUNCTIONS["national"]["provision_sealer"][1]
PARALLEL_PUTS = 8  # adapters/identity_store.py and provision_log.py: conditional puts from a thread pool
BATCH_GET_KEYS, BATCH_WRITE_ITEMS = 100, 25  # DynamoDB's own limits, used as such by the adapters
CHUNK_ROWS = 1_000  # services/provision_batch.py
MAX_BATCH_RECORDS = 1_000_000  # data/agencies.demo.toml max_batch_records of the batch agreements
DAY_SHARDS = 16  # domain/provision.py: the by_day index is spread over 16 partitions a day
MANIFEST_PART_REFS = 4_000  # adapters/provision_log.py
DATA_KEY_MAX_USES, DATA_KEY_MAX_AGE_S = 100_000, 300  # adapters/kms.py
# handlers/provision_api.py: the provision functions keep up to 65,536 unwrapped data keys per instance
# (DataKeys(cache_size=65_536), ~16 MB); 256, the writers' default, made the alive check call KMS Decrypt for
# most records — this projection found that, and the cache was raised.
UNWRAPPED_KEY_CACHE = 65_536

# --- sizes (docs/domain.md §6) -----------------------------------------------------------------------------

RESIDENTS = 125_000_000
MUNICIPALITIES = 1_741
PREFECTURES = 47
NAGANO_MUNICIPALITIES = 77
NAGANO_RESIDENTS = 2_020_000  # assumption: Nagano prefecture's population, about 2.02 million
NOTICES_MONTH = 1_000_000
NOTICES_MARCH = 2_000_000
NOTICES_YEAR = 12_000_000
ALIVE_CHECK_RECORDS = 79_000_000
# Municipalities per prefecture (Hokkaidō … Okinawa, 2024; sums to 1,741, checked by the tests).
MUNICIPALITIES_BY_PREFECTURE = (
    179, 40, 33, 35, 25, 35, 59, 44, 25, 35, 63, 54, 62, 33, 30, 15, 19, 17, 27, 77, 42, 35, 54, 29,
    19, 26, 43, 41, 39, 30, 19, 19, 27, 23, 19, 24, 17, 20, 34, 60, 20, 21, 45, 18, 26, 43, 41,
)
LARGEST_PREFECTURE_SHARE = 0.113  # Tokyo, ~14.1 of ~124.9 million residents — assumption (population share)

# --- assumptions (neither price, quota, measurement nor code) ---------------------------------------------------

AWS_CALL_LATENCY_S = 0.006  # one DynamoDB/KMS/SQS call from Lambda in the region, round trip
TRANSACTION_LATENCY_S = 0.030  # one TransactWriteItems of up to 100 items (two-phase), round trip
TRANSACTION_WRU_FACTOR = 2  # a transactional write costs two write units per KB (DynamoDB pricing)
INITIAL_LOAD_PREWARMED = True  # the national table's warm throughput raised to its quota before the initial load
ARM_CPU_FACTOR = 1.0  # arm64 Lambda CPU time relative to the x86-64 machine that measured CALL_CPU_US
GSI_WRITES_PER_CURRENT_PUT = 1.0  # by_blind_index: a current put that adds, changes or drops bidx writes the index
HISTORY_ITEMS_PER_NOTICE = 1.0  # one history item per notice (a code change touches two codes: ~1 in 100)
LEDGER_WRU = 1  # the LEDGER#<municipality> item stays under 1 KB (runs without gaps, a few months of counts)
CS_TRANSACTION_WRU = 4  # two items, transactional writes cost 2 WRU each (adapters/cs_state.py)
# adapters/local_records.py (decision 0044): the CS appends each notice to its tier's local-record table, 100 to a
# TransactWriteItems — one item under 1 KB (847 B mean, 853 B max with all nine local fields:
# bench/bench_local_records.py), so 2 WRU, and its by_household index entry, 1 WRU (upper bound: every row
# names a household)
LOCAL_RECORD_WRU_PER_NOTICE = TRANSACTION_WRU_FACTOR * 1 + 1
WORKING_DAYS = 21  # a municipality drops one export a working day
INITIAL_LOAD_ROWS_PER_FILE = 100_000  # the CS holds a file in 512 MB and must finish in 5 minutes
TRAIL_EVENT_KB = 1.5  # one CloudTrail data event as delivered to CloudWatch Logs
LOG_KB_PER_INVOCATION = 2.0  # JSON logs a function writes per invocation
PROVISION_LOG_ENTRY_KB = 0.5  # brief: ~0.5 KB a provision record → 1 WRU; its by_day index entry 1 WRU more
JOB_ITEM_AVG_KB = 3  # JOB#<id> with its set of finished chunk numbers (1,000 for a 1M-row job), on average
BATCH_TASK_KB = 15  # a chunk task: 1,000 twelve-digit codes as JSON
IDENTITY_ITEM_KB = 0.8  # stored size of a current or history item incl. DynamoDB's 100-byte overhead
INDEX_ENTRY_KB = 0.2  # a keys-only index entry incl. overhead (by_blind_index, by_day)
LOCAL_RECORD_ITEM_KB = 0.95  # a local-record item (847 B mean with all nine fields, bench/bench_local_records.py)
#                              incl. DynamoDB's 100-byte overhead
UPDATED_SHARE_A_YEAR = NOTICES_YEAR / RESIDENTS  # residents whose current item was rewritten within a year
BUSY_NATIONAL_INSTANCES = 1  # national processor instances busy through the working hours of a normal month
WORKING_HOURS_A_DAY = 9
IDLE_POLLER_RECEIVES_A_MONTH = 5 * 3 * 60 * 24 * 30  # 5 long-pollers × one 20-s receive each, all month
BASELINE_LOG_GB_PER_VPC = 0.2  # flow logs of a quiet tier VPC a month
BASELINE_TRAIL_LOG_GB_PER_ACCOUNT = 1.0  # management events delivered to CloudWatch Logs a month
ACCOUNTS_COUNTRY = 6  # national, prefectures, and municipality tiers over 4 accounts (reserved concurrency, below)
RECIPIENTS_COUNTRY = PREFECTURES + 20  # every prefecture's own use plus ~20 national agencies
OWN_USE_PREFECTURES_COUNTRY = PREFECTURES  # every prefecture tier gets its execute-api endpoint

ASSUMPTIONS = {
    "AWS_CALL_LATENCY_S": "one AWS API call from Lambda in the region takes 6 ms round trip",
    "TRANSACTION_LATENCY_S": "a TransactWriteItems of up to 100 items takes 30 ms round trip",
    "TRANSACTION_WRU_FACTOR": "transactional writes cost 2 WRU per KB (as documented; not measured by us)",
    "INITIAL_LOAD_PREWARMED": "before the initial load the national table's warm throughput is raised to the "
                              "40,000 WRU/s table quota (UpdateTable WarmThroughput, no quota increase; its one-off "
                              "charge is not priced here); without it add the warm-up of the limits table",
    "ARM_CPU_FACTOR": "arm64 Lambda spends the same CPU per call as the x86-64 machine that measured it",
    "GSI_WRITES_PER_CURRENT_PUT": "each current-item put writes the by_blind_index index once (adds, changes or "
                                  "drops bidx); an upper bound when neither old nor new state has one",
    "HISTORY_ITEMS_PER_NOTICE": "one history item per notice",
    "LEDGER_WRU": "the ledger item stays under 1 KB",
    "WORKING_DAYS": "a municipality sends one export a working day (21 a month)",
    "INITIAL_LOAD_ROWS_PER_FILE": "the initial load arrives as files of 100,000 rows (a CS has 512 MB and 5 min)",
    "TRAIL_EVENT_KB": "a CloudTrail data event is 1.5 KB in CloudWatch Logs",
    "LOG_KB_PER_INVOCATION": "a function logs 2 KB per invocation",
    "JOB_ITEM_AVG_KB": "a batch job item averages 3 KB while its chunks finish",
    "IDLE_POLLER_RECEIVES_A_MONTH": "an SQS event source long-polls with 5 pollers (20-s receives) when idle",
    "BASELINE_LOG_GB_PER_VPC": "a quiet VPC writes 0.2 GB of flow logs a month",
    "BASELINE_TRAIL_LOG_GB_PER_ACCOUNT": "management events put 1 GB a month per account into CloudWatch Logs",
    "ACCOUNTS_COUNTRY": "the country runs in 6 accounts: national, prefectures, municipality tiers in 4",
    "RECIPIENTS_COUNTRY": "67 recipients: each prefecture's own use and about 20 national agencies",
    "OWN_USE_PREFECTURES_COUNTRY": "every prefecture tier has own-use recipients, hence an execute-api endpoint",
    "LARGEST_PREFECTURE_SHARE": "Tokyo holds 11.3% of residents and notices",
    "UPDATED_SHARE_A_YEAR": "12 million notices a year rewrite ~9.6% of current items, spread over the year's keys",
    "BUSY_NATIONAL_INSTANCES": "one national processor instance is busy through 9 working hours, 21 days a month",
    "NAGANO_RESIDENTS": "Nagano prefecture holds about 2.02 million residents",
    "MUNICIPALITIES_BY_PREFECTURE": "municipalities per prefecture as we know the 2024 list (not from a stored "
                                    "source; checked only to add up to 1,741): used for the alarm count",
    "YEN_PER_USD": "¥150 to the dollar",
}


# --- the model --------------------------------------------------------------------------------------------------


def usd(key: str) -> float:
    return PRICES[key].usd


def vcpu_share(memory_mb: int) -> float:
    return memory_mb / QUOTAS["lambda_mb_per_vcpu"].value


def body_bytes_per_notice() -> float:
    """Signed, gzip+base64 message body bytes per notice (measured: 1.1 MB for 18,692 notices)."""
    return MEASURED_BODY_BYTES / MEASURED_NOTICES


def sqs_billed_per_call(notices_per_message: float) -> int:
    """Requests billed for one SQS call carrying one message: one per 64 KB of payload."""
    return max(1, math.ceil(notices_per_message * body_bytes_per_notice() / 65_536))


def wru_for(item_kb: float) -> int:
    """DynamoDB bills a standard write of up to 1 KB as one write request unit, each further KB one more."""
    return max(1, math.ceil(item_kb))


def rru_for(item_kb: float, *, consistent: bool = True) -> float:
    """A strongly consistent read of up to 4 KB is one read unit; eventually consistent, half."""
    units = max(1, math.ceil(item_kb / 4))
    return units if consistent else units / 2


@dataclass
class Bill:
    """Units and dollars of one scenario, by line."""

    lines: dict[str, float]  # line → USD
    units: dict[str, float]  # unit name → count (for the checkable arithmetic)
    hours: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.lines.values())


@dataclass(frozen=True)
class NoticeScenario:
    name: str
    notices: int
    notices_per_message: float
    notices_per_file: float
    new_table: bool = False  # the national table has never seen this rate: on-demand must warm up
    prewarmed: bool = False  # ...unless its warm throughput was raised before (UpdateTable WarmThroughput)


def month_scenario(name: str, notices: int) -> NoticeScenario:
    per_file = notices / (MUNICIPALITIES * WORKING_DAYS)
    return NoticeScenario(name, notices, min(NOTICES_PER_FULL_MESSAGE, per_file), per_file)


SCENARIOS = (
    month_scenario("a month of national notices", NOTICES_MONTH),
    month_scenario("the March peak", NOTICES_MARCH),
    NoticeScenario("the initial load (one notice per resident)", RESIDENTS, NOTICES_PER_FULL_MESSAGE,
                   INITIAL_LOAD_ROWS_PER_FILE, new_table=True, prewarmed=INITIAL_LOAD_PREWARMED),
)


def calls(s: NoticeScenario) -> dict[tuple[str, str, str], float]:
    """API calls of a scenario: each measured rate scaled by notices, messages or files."""
    measured_per_message = MEASURED_NOTICES / MEASURED_MESSAGES
    measured_per_file = MEASURED_NOTICES / MEASURED_FILES
    factor = {"notice": 1.0, "message": measured_per_message / s.notices_per_message,
              "file": measured_per_file / s.notices_per_file}
    return {(m.service, m.op, m.caller): m.per_1000 / 1000 * s.notices * factor[m.scales]
            for m in MEASURED_PER_1000}


def tier_calls(c: dict, caller: str) -> float:
    return sum(v for (_, _, who), v in c.items() if who == caller)


def processor_seconds_per_notice(c: dict, tier: str, notices: int) -> float:
    """Billed seconds per notice of a processor: CPU (domain core + client CPU per call) on its vCPU share,
    overlapped with the conditional puts' waits (8 in flight), plus the sequential calls' waits."""
    total = tier_calls(c, tier) / notices
    transactions = c.get(("dynamodb", "TransactWriteItems", tier), 0.0) / notices
    cpu_s = (MEASURED_DOMAIN_US + total * CALL_CPU_US) * ARM_CPU_FACTOR / 1e6 / vcpu_share(PROCESSOR_MEMORY_MB)
    # adapters/identity_store.py: one read and one TransactWriteItems per 100 items, in sequence (no thread pool)
    return cpu_s + (total - transactions) * AWS_CALL_LATENCY_S + transactions * TRANSACTION_LATENCY_S


def cs_seconds_per_notice(c: dict, notices: int) -> float:
    total = tier_calls(c, "cs") / notices
    cpu_s = ((MEASURED_PARSE_US + MEASURED_SERIALISE_US) + total * CALL_CPU_US) * ARM_CPU_FACTOR / 1e6
    return cpu_s / vcpu_share(CS_MEMORY_MB) + total * AWS_CALL_LATENCY_S


def tier_wru_per_notice(notices_per_message: float) -> float:
    """Write units per notice of one processing tier (adapters/identity_store.py, decision 0021): the history
    item, the current item (one per notice: an upper bound, a stale notice writes none) and its index entry,
    and the municipality's ledger once per message — all in TransactWriteItems, which costs two units per item
    (the index entry is written by DynamoDB, not by the transaction: one unit)."""
    return (HISTORY_ITEMS_PER_NOTICE * TRANSACTION_WRU_FACTOR * wru_for(IDENTITY_ITEM_KB)
            + TRANSACTION_WRU_FACTOR * wru_for(CURRENT_ITEM_BYTES / 1024) + GSI_WRITES_PER_CURRENT_PUT
            + TRANSACTION_WRU_FACTOR * LEDGER_WRU / notices_per_message)


def notice_wru_rru(c: dict, notices: int, notices_per_message: float = NOTICES_PER_FULL_MESSAGE,
                   ) -> tuple[float, float]:
    """Write and read request units (not API calls) of the notice pipeline."""
    wru = c[("dynamodb", "TransactWriteItems", "cs")] * CS_TRANSACTION_WRU + notices * LOCAL_RECORD_WRU_PER_NOTICE
    rru = c[("dynamodb", "GetItem", "cs")] * rru_for(1)
    for _tier in ("prefecture", "national"):
        wru += notices * tier_wru_per_notice(notices_per_message)
        # one consistent BatchGetItem read per message: history keys, current keys, the ledger; items < 4 KB
        rru += 2 * notices * rru_for(IDENTITY_ITEM_KB) + notices / notices_per_message * rru_for(1)
    return wru, rru


def notice_bill(s: NoticeScenario) -> Bill:
    c = calls(s)
    n = s.notices
    messages = n / s.notices_per_message
    files = n / s.notices_per_file
    wru, rru = notice_wru_rru(c, n, s.notices_per_message)
    gb_s = {tier: n * processor_seconds_per_notice(c, tier, n) * PROCESSOR_MEMORY_MB / 1024
            for tier in ("prefecture", "national")}
    gb_s["cs"] = n * cs_seconds_per_notice(c, n) * CS_MEMORY_MB / 1024
    # measured: 231 CS invocations (one per file) and 48 processor invocations for 237 messages, both tiers
    invocations = files + messages * (MEASURED_INVOCATIONS - MEASURED_FILES) / MEASURED_MESSAGES
    kms_asym = sum(v for (svc, op, _), v in c.items() if svc == "kms" and op in ("Sign", "GetPublicKey"))
    kms_sym = sum(v for (svc, op, _), v in c.items() if svc == "kms" and op not in ("Sign", "GetPublicKey"))
    sqs = sum(v for (svc, _, _), v in c.items() if svc == "sqs") * sqs_billed_per_call(s.notices_per_message)
    ddb_calls = sum(v for (svc, _, _), v in c.items() if svc == "dynamodb")
    s3_calls = sum(v for (svc, _, _), v in c.items() if svc == "s3")
    trail_events = ddb_calls + s3_calls + invocations  # the trail selects data events of tables, functions, drop zones
    log_gb = (trail_events * TRAIL_EVENT_KB + invocations * LOG_KB_PER_INVOCATION) / 1024 ** 2
    # message bodies cross an SQS interface endpoint four times: CS send, prefecture receive and send, national
    # receive (DynamoDB and S3 go through free gateway endpoints)
    endpoint_gb = 4 * n * body_bytes_per_notice() / 1024 ** 3
    lines = {
        "Lambda compute": sum(gb_s.values()) * usd("lambda_gb_s_arm"),
        "Lambda requests": invocations * usd("lambda_request"),
        "DynamoDB writes": wru * usd("ddb_wru"),
        "DynamoDB reads": rru * usd("ddb_rru"),
        "KMS": kms_asym * usd("kms_asymmetric_request") + kms_sym * usd("kms_request"),
        "SQS": sqs * usd("sqs_request"),
        "S3 requests": c[("s3", "GetObject", "cs")] * usd("s3_get") + c[("s3", "PutObject", "cs")] * usd("s3_put"),
        "interface endpoint data": endpoint_gb * usd("vpce_gb"),
        "CloudTrail data events": trail_events * usd("cloudtrail_data_event"),
        "CloudWatch Logs": log_gb * usd("cw_logs_ingest"),
        "X-Ray (upper bound)": invocations * usd("xray_trace"),
    }
    units = {"notices": n, "messages": messages, "files": files, "dynamodb calls": ddb_calls, "WRU": wru, "RRU": rru,
             "GB-s": sum(gb_s.values()), "invocations": invocations, "KMS asymmetric": kms_asym,
             "KMS symmetric": kms_sym, "SQS billed": sqs, "trail events": trail_events}
    return Bill(lines, units, hours=notice_hours(s))


def national_rate(s: NoticeScenario, concurrency: int = PROCESSOR_CONCURRENCY) -> float:
    """Notices per second the national processor drains at its configured concurrency (the whole country's
    notices pass through it; each prefecture has its own five instances), at most what the national table's
    default write quota (40,000 WRU/s) carries."""
    c = calls(s)
    return min(concurrency / processor_seconds_per_notice(c, "national", s.notices),
               QUOTAS["ddb_table_wru_per_s"].value / wru_per_notice_national(s))


def prefecture_rate(s: NoticeScenario, concurrency: int = PROCESSOR_CONCURRENCY) -> float:
    c = calls(s)
    return concurrency / processor_seconds_per_notice(c, "prefecture", s.notices)


def wru_per_notice_national(s: NoticeScenario) -> float:
    return tier_wru_per_notice(s.notices_per_message)


def warmup_hours(wru_per_s: float) -> float:
    """On-demand tables start at 4,000 WRU/s and may double their previous peak every 30 minutes."""
    start = QUOTAS["ddb_new_table_wru_per_s"].value
    return 0.5 * max(0, math.ceil(math.log2(wru_per_s / start))) if wru_per_s > start else 0.0


def notice_hours(s: NoticeScenario, concurrency: int = PROCESSOR_CONCURRENCY) -> float:
    """Hours to drain the scenario if it all arrived at once: the slower of the national processor and the
    largest prefecture's, plus the national table's on-demand warm-up."""
    nat = s.notices / national_rate(s, concurrency)
    pref = s.notices * LARGEST_PREFECTURE_SHARE / prefecture_rate(s, concurrency)
    wru_per_s = national_rate(s, concurrency) * wru_per_notice_national(s)
    return max(nat, pref) / 3600 + (warmup_hours(wru_per_s) if s.new_table and not s.prewarmed else 0.0)


# --- provision (by design: adapters/provision_log.py, services/provision*.py) ----------------------------------


def lookup_units(k: int, *, together: bool = True) -> dict[str, float]:
    """One look-up of k codes (decisions 0023, 0034, 0056): the state table's keys (isolation mark,
    STAT#<month>, two scan slots, k chain heads) and the k residents' current items read in consistent
    BatchGetItems of 100 keys in all (``together=False``, a batch chunk: the state keys and the identity
    keys each in their own requests), then TransactWriteItems of at most 100 actions: per record its log
    entry (~0.5 KB, plus its by_day index entry) and its head, and the statistics and scan slot once; then
    the delivery confirmation (one PutItem). Transactional writes cost two write units per item (the index
    entry one); every request waits for the one before."""
    state_keys, actions = k + 4, 2 * k + 2
    reads = math.ceil((state_keys + k) / BATCH_GET_KEYS) if together \
        else math.ceil(state_keys / BATCH_GET_KEYS) + math.ceil(k / BATCH_GET_KEYS)
    calls_ = reads + math.ceil(actions / 100) + 1
    rru = (4 + k) * rru_for(0.2) + k * rru_for(IDENTITY_ITEM_KB)  # state items read strongly consistent
    wru = 2 * (k * wru_for(PROVISION_LOG_ENTRY_KB) + k * wru_for(0.2) + 2) + k + wru_for(0.2)
    return {"calls": calls_, "rru": rru, "wru": wru, "puts": 0, "sequential": calls_}


def distinct_data_keys_after_load() -> float:
    """Data keys sealing the national table's current items after the initial load: a new key per
    100,000 records or 5 minutes per processor instance, whichever comes first."""
    load = SCENARIOS[2]
    seconds = load.notices / national_rate(load)
    return max(RESIDENTS / DATA_KEY_MAX_USES, PROCESSOR_CONCURRENCY * seconds / DATA_KEY_MAX_AGE_S)


def data_keys_a_year() -> float:
    """Data keys sealing the current items rewritten within a year: the national processor takes a new key
    every 5 minutes per busy instance, busy through the working hours."""
    return (BUSY_NATIONAL_INSTANCES * WORKING_HOURS_A_DAY * 3600 / DATA_KEY_MAX_AGE_S * WORKING_DAYS * 12)


def decrypt_miss_rate(cache: int = UNWRAPPED_KEY_CACHE) -> float:
    """Share of records, read in random order, whose data key is not among an instance's cached unwrapped
    keys: most residents still hold one of the initial load's keys, those updated within the year one of the
    year's keys. (First touches of each key are ignored: a few thousand against tens of millions of reads.)"""
    initial, recent = distinct_data_keys_after_load(), data_keys_a_year()
    return ((1 - UPDATED_SHARE_A_YEAR) * max(0.0, 1 - cache / initial)
            + UPDATED_SHARE_A_YEAR * max(0.0, 1 - cache / recent))


def chunk_seconds(miss_rate: float) -> float:
    u = lookup_units(CHUNK_ROWS, together=False)
    calls_ = u["calls"] + 2  # + the job read and the chunk count (complete_chunk)
    cpu = (calls_ * CALL_CPU_US + CHUNK_ROWS * MEASURED_DOMAIN_US) * ARM_CPU_FACTOR / 1e6 / vcpu_share(BATCH_MEMORY_MB)
    waits = max(cpu, u["puts"] * AWS_CALL_LATENCY_S / PARALLEL_PUTS) + (u["sequential"] + 2) * AWS_CALL_LATENCY_S
    return waits + CHUNK_ROWS * miss_rate * AWS_CALL_LATENCY_S  # unwrap() decrypts one key at a time


def batch_bill(records: int, miss_rate: float) -> Bill:
    chunks = records / CHUNK_ROWS
    u = lookup_units(CHUNK_ROWS, together=False)
    rru = chunks * (u["rru"] + rru_for(JOB_ITEM_AVG_KB))
    wru = chunks * (u["wru"] + wru_for(JOB_ITEM_AVG_KB))
    ddb_calls = chunks * (u["calls"] + 2)
    seconds = chunk_seconds(miss_rate)
    gb_s = chunks * seconds * BATCH_MEMORY_MB / 1024
    decrypts = records * miss_rate
    sqs_per_chunk = 0.1 * math.ceil(10 * BATCH_TASK_KB / 64) + 2 * math.ceil(BATCH_TASK_KB / 64)  # send, receive+delete
    days = 1  # sealed the next night
    manifest_wru = records / MANIFEST_PART_REFS * wru_for(MANIFEST_PART_REFS * 84 * 0.5 / 1024)
    seal_rru = records * INDEX_ENTRY_KB / 4 * 0.5  # by_day Query, eventually consistent, 4 KB per read unit
    trail_events = ddb_calls + chunks  # + one Invoke per chunk
    log_gb = (trail_events * TRAIL_EVENT_KB + chunks * LOG_KB_PER_INVOCATION) / 1024 ** 2
    lines = {
        "Lambda compute": gb_s * usd("lambda_gb_s_arm"),
        "Lambda requests": chunks * usd("lambda_request"),
        "DynamoDB writes": (wru + manifest_wru) * usd("ddb_wru"),
        "DynamoDB reads": (rru + seal_rru) * usd("ddb_rru"),
        "KMS": decrypts * usd("kms_request") + days * usd("kms_asymmetric_request"),
        "SQS": chunks * sqs_per_chunk * usd("sqs_request"),
        "S3 requests": chunks * usd("s3_put") + records / MAX_BATCH_RECORDS * usd("s3_get"),
        "interface endpoint data": chunks * 2 * BATCH_TASK_KB / 1024 ** 2 * usd("vpce_gb"),
        "CloudTrail data events": trail_events * usd("cloudtrail_data_event"),
        "CloudWatch Logs": log_gb * usd("cw_logs_ingest"),
        "X-Ray (upper bound)": chunks * usd("xray_trace"),
    }
    hours = chunks * seconds / BATCH_CONCURRENCY / 3600
    units = {"records": records, "chunks": chunks, "jobs": math.ceil(records / MAX_BATCH_RECORDS), "WRU": wru,
             "RRU": rru, "dynamodb calls": ddb_calls, "GB-s": gb_s, "KMS Decrypt": decrypts,
             "seconds per chunk": seconds}
    return Bill(lines, units, hours=hours)


def lookup_cost_per_record(k: int, miss_rate: float) -> float:
    u = lookup_units(k)
    cpu = u["calls"] * CALL_CPU_US * ARM_CPU_FACTOR / 1e6 / vcpu_share(API_MEMORY_MB)
    seconds = max(cpu, k * AWS_CALL_LATENCY_S / PARALLEL_PUTS) + (u["sequential"] + k * miss_rate) * AWS_CALL_LATENCY_S
    dollars = (u["wru"] * usd("ddb_wru") + u["rru"] * usd("ddb_rru") + seconds * API_MEMORY_MB / 1024 *
               usd("lambda_gb_s_arm") + usd("lambda_request") + usd("apigw_rest_request") + k * miss_rate *
               usd("kms_request") + (u["calls"] + 1) * usd("cloudtrail_data_event") + usd("xray_trace"))
    return dollars / k


# --- limits -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    name: str
    limit: float
    demand: float
    where: str
    answer: str

    @property
    def use(self) -> float:
        return self.demand / self.limit


def reserved(stack: str) -> int:
    """Reserved concurrency of one stack's functions (FUNCTIONS)."""
    return sum(concurrency for _, concurrency in FUNCTIONS[stack].values())


def reserved_concurrency(municipalities: int, prefectures: int) -> int:
    """Every function's reserved concurrency, each prefecture with its municipality tier."""
    return (municipalities * reserved("per_municipality")
            + prefectures * (reserved("prefecture") + reserved("municipality_tier")) + reserved("national"))


def cs_signs_per_instance_s(s: NoticeScenario) -> float:
    """KMS Sign calls a second of one busy CS: one per message of ``notices_per_message`` notices."""
    return 1 / (s.notices_per_message * cs_seconds_per_notice(calls(s), s.notices))


def paced_signs_per_s(s: NoticeScenario) -> float:
    """KMS Sign calls a second (CS and prefecture, all in one account at worst) when the drops are paced to what
    the national processor drains: Signs per notice × the national rate."""
    c = calls(s)
    signs = c[("kms", "Sign", "cs")] + c[("kms", "Sign", "prefecture")]
    return signs / s.notices * national_rate(s)


def batch_concurrency_at(records_per_s_limit: float, per_record: float) -> float:
    """Batch concurrency at which ``per_record`` × records/s reaches ``records_per_s_limit``."""
    per_instance = CHUNK_ROWS / chunk_seconds(decrypt_miss_rate())
    return records_per_s_limit / (per_instance * per_record)


def limits() -> list[Limit]:
    march, load = SCENARIOS[1], SCENARIOS[2]
    nat = national_rate(load)
    prefs = PREFECTURES * prefecture_rate(load)  # every prefecture processor busy: what reaches the national queue
    wru = wru_per_notice_national(load)
    per_instance_wru = nat / PROCESSOR_CONCURRENCY * wru
    miss = decrypt_miss_rate()
    alive_records_per_s = BATCH_CONCURRENCY * CHUNK_ROWS / chunk_seconds(miss)
    reservable = QUOTAS["lambda_account_concurrency"].value - 100
    muni_accounts = ACCOUNTS_COUNTRY - 2
    cs_per_account = math.ceil(MUNICIPALITIES / muni_accounts) * CS_RESERVED_CONCURRENCY
    ecc = QUOTAS["kms_ecc_per_s"].value
    return [
        Limit("Lambda concurrency reservable in one account (1,000 − 100 unreserved)", reservable,
              reserved_concurrency(MUNICIPALITIES, PREFECTURES),
              f"at deployment, every tier in one account: 1,741 CSs × {CS_RESERVED_CONCURRENCY} reserved + 47 "
              f"prefecture tiers × {reserved('prefecture')} (processor 5, three daily or monthly jobs 1 each) + 47 "
              f"municipality tiers × {reserved('municipality_tier')} (counter API 10, channel 5) + national "
              f"{reserved('national')} (processor 5, provision API 20, batch 10, sealer and three jobs 1 each)",
              "municipality tiers in their own accounts (config: MunicipalityTier.env), at most "
              f"{int((reservable - reserved('municipality_tier')) // CS_RESERVED_CONCURRENCY)} municipalities per "
              "account beside their tier's counter API and channel — without the channel "
              "between municipalities, which needs the prefecture and municipality tiers in one account "
              "(Deployment.channel) — or a quota increase"),
        Limit("national processor at its configured concurrency (5), notices/s", nat, prefs,
              "initial load: the 47 prefecture tiers (5 instances each) deliver faster than the one national "
              "processor drains", f"the national inbound queue absorbs it: {load.notices / nat / 3600:.1f} h for "
              "125 million; processor_concurrency is configuration (2–1,000), raise it for the load"),
        Limit("DynamoDB new on-demand table: 4,000 WRU/s at once", QUOTAS["ddb_new_table_wru_per_s"].value,
              nat * wru, f"national identity table, initial load at 5 instances ({wru:.1f} WRU per notice)",
              f"on-demand doubles its previous peak per 30 min (+{warmup_hours(nat * wru):.1f} h); pre-warm the "
              "tables before the load"),
        Limit("DynamoDB table quota: 40,000 WRU/s (adjustable)", QUOTAS["ddb_table_wru_per_s"].value, nat * wru,
              "national identity table, initial load at 5 instances",
              f"reached at ~{QUOTAS['ddb_table_wru_per_s'].value / per_instance_wru:.0f} national instances "
              f"({QUOTAS['ddb_table_wru_per_s'].value / wru:,.0f} notices/s, 125 million in "
              f"{RESIDENTS * wru / QUOTAS['ddb_table_wru_per_s'].value / 3600:.1f} h); raise the quota to go faster"),
        Limit("DynamoDB partition: 1,000 WCU/s on LEDGER#<municipality>", QUOTAS["ddb_partition_wru_per_s"].value,
              prefecture_rate(load) / load.notices_per_message * LEDGER_WRU,
              "initial load, all five prefecture instances on one municipality's files: one ledger put per message",
              "updated once per message, never per notice: no (five writers do retry on the version check)"),
        Limit("DynamoDB partition: 1,000 WCU/s on STAT#<month>/<recipient>", QUOTAS["ddb_partition_wru_per_s"].value,
              100, "one transactional ADD per look-up request (2 write units; decision 0023), at the demo's "
                   "largest throttle (50 requests/s)",
              "bites only for a recipient allowed over ~500 requests/s; its usage plan holds it at 20–50"),
        Limit("DynamoDB partition: 1,000 WCU/s per by_day index shard (16 a day)",
              QUOTAS["ddb_partition_wru_per_s"].value, alive_records_per_s / DAY_SHARDS,
              "alive check at batch concurrency 10: one index entry per record",
              f"the first provision limit: reached at batch concurrency "
              f"~{batch_concurrency_at(DAY_SHARDS * QUOTAS['ddb_partition_wru_per_s'].value, 1):.0f} "
              f"({DAY_SHARDS * 1000:,} records/s); more DAY_SHARDS before more concurrency"),
        Limit("KMS symmetric: 20,000 requests/s (Tokyo)", QUOTAS["kms_symmetric_per_s"].value,
              alive_records_per_s * miss, f"alive check: Decrypt of each data key not cached ({miss:.0%} of records)",
              (f"reached at batch concurrency ~{batch_concurrency_at(QUOTAS['kms_symmetric_per_s'].value, miss):.0f}; "
               if miss else "not reached: every data key stays cached after its first Decrypt; ") +
              f"the provision functions keep {UNWRAPPED_KEY_CACHE:,} unwrapped keys per instance "
              f"(~{distinct_data_keys_after_load():,.0f} data keys exist after the load)"),
        Limit("KMS ECC Sign: 300 requests/s per account (CS tier)", ecc,
              cs_per_account * cs_signs_per_instance_s(load),
              f"initial load if every municipality of one account ({cs_per_account} CS instances) drops at once: "
              f"{cs_signs_per_instance_s(load):.0f} Signs/s per busy CS",
              f"the CS signs once per {NOTICES_PER_FULL_MESSAGE} notices, so 300/s carries "
              f"{ecc * NOTICES_PER_FULL_MESSAGE:,.0f} notices/s, {ecc * NOTICES_PER_FULL_MESSAGE / nat:.0f}× the "
              "national drain: pace the drops (SDK and S3 retries absorb bursts), or ask for more"),
        Limit("KMS ECC Sign: 300 requests/s per account (prefecture tier)", ecc, prefs / load.notices_per_message,
              "initial load, all 47 prefecture processors busy (one account for all prefectures): one Sign per "
              "forwarded message", f"bites only if the CS tier delivers over {ecc * NOTICES_PER_FULL_MESSAGE / nat:.0f}"
              "× the national drain; paced drops keep it far below"),
        Limit("KMS ECC Sign: 300 requests/s per account, initial load paced to the national drain", ecc,
              paced_signs_per_s(load),
              f"the plan: drops paced so the CSs send what the national tier drains ({nat:,.0f} notices/s); "
              f"CS and prefecture Signs of one account (one per {NOTICES_PER_FULL_MESSAGE} notices, one per "
              "forwarded message)",
              f"inside the default quota with {ecc / max(paced_signs_per_s(load), 1e-9):.0f}× headroom: "
              "no increase needed"),
        Limit("KMS GetPublicKey: 2,000 requests/s", QUOTAS["kms_get_public_key_per_s"].value,
              (MUNICIPALITIES + PREFECTURES) * PROCESSOR_CONCURRENCY / 3600,
              "one per sender per processor instance per hour", "cached for an hour: no"),
        Limit("Lambda scaling: 1,000 new environments per 10 s per function",
              QUOTAS["lambda_scaling_per_10s"].value, max(PROCESSOR_CONCURRENCY, API_CONCURRENCY, BATCH_CONCURRENCY),
              "the largest configured concurrency of one function", "capped far below it: no"),
        Limit("API Gateway: 10,000 requests/s per account", QUOTAS["apigw_account_rps"].value,
              RECIPIENTS_COUNTRY * 50, "every recipient at the demo's 50 requests/s at once",
              "per-recipient usage plans (throttle_rate) keep the sum below it"),
        Limit("SQS standard queues", float("inf"),
              march.notices / march.notices_per_message / (WORKING_DAYS * 9 * 3600),
              "March: messages/s over working hours", "nearly unlimited throughput; no FIFO queue is used"),
    ]


# --- fixed monthly cost -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    prefectures: int
    municipalities_by_prefecture: tuple[int, ...]
    own_use_prefectures: int
    recipients: int
    accounts: int

    @property
    def municipalities(self) -> int:
        return sum(self.municipalities_by_prefecture)


NAGANO = Shape(1, (NAGANO_MUNICIPALITIES,), 1, 5, 1)  # nagano-demo: one account, five demo recipients
COUNTRY = Shape(PREFECTURES, MUNICIPALITIES_BY_PREFECTURE, OWN_USE_PREFECTURES_COUNTRY, RECIPIENTS_COUNTRY,
                ACCOUNTS_COUNTRY)


def _endpoint_azs(endpoints: tuple[str, ...], azs: int) -> int:
    return sum(1 if e in SINGLE_AZ_ENDPOINTS else azs for e in endpoints)


def endpoint_azs(shape: Shape, *, muni_azs: int = AZS, pref_azs: int = AZS) -> int:
    per_pref = tuple(e for e in INTERFACE_ENDPOINTS["prefecture"] if e != "execute-api")
    return (_endpoint_azs(INTERFACE_ENDPOINTS["national"], AZS)
            + shape.prefectures * _endpoint_azs(per_pref, pref_azs) + shape.own_use_prefectures * pref_azs
            + shape.prefectures * _endpoint_azs(INTERFACE_ENDPOINTS["municipality_tier"], muni_azs))


def kms_keys(shape: Shape) -> int:
    return (KMS_KEYS["national"] + shape.prefectures * (KMS_KEYS["prefecture"] + KMS_KEYS["municipality_tier"])
            + shape.municipalities * KMS_KEYS["per_municipality"])


def symmetric_keys(shape: Shape) -> int:
    """Keys with yearly rotation (all but the ECC signing keys: the seal key, each prefecture's
    and each municipality tier's, each CS's): each rotation adds $1 a month."""
    return kms_keys(shape) - 1 - 2 * shape.prefectures - shape.municipalities


def dashboards(shape: Shape) -> int:
    return DASHBOARDS["national"] + shape.prefectures * (DASHBOARDS["prefecture"] + DASHBOARDS["municipality_tier"])


def cs_alarms(shape: Shape) -> int:
    alarms = 0
    for count in shape.municipalities_by_prefecture:
        stacks = [min(MAX_MUNICIPALITIES_PER_STACK, count - i) for i in range(0, count, MAX_MUNICIPALITIES_PER_STACK)]
        alarms += sum(2 * math.ceil(n / FUNCTIONS_PER_ALARM) for n in stacks)
    return alarms


def alarm_counts(shape: Shape) -> tuple[int, int]:
    """(alarms, alarm metrics): CloudWatch prices an alarm per metric it evaluates."""
    single = ALARMS["national"] + shape.prefectures * (ALARMS["prefecture"] + ALARMS["municipality_tier"])
    metrics = ALARM_METRICS["national"] + shape.prefectures * (ALARM_METRICS["prefecture"]
                                                               + ALARM_METRICS["municipality_tier"])
    return single + cs_alarms(shape), metrics + shape.municipalities * CS_ALARM_METRICS_PER_MUNICIPALITY


def custom_metrics(shape: Shape) -> int:
    return (CUSTOM_METRICS["national"] + shape.prefectures * (CUSTOM_METRICS["prefecture"]
                                                              + CUSTOM_METRICS["municipality_tier"])
            + shape.recipients * CUSTOM_METRICS["per_recipient"])


def vpcs(shape: Shape) -> int:
    return 1 + 2 * shape.prefectures


def event_sources(shape: Shape) -> int:
    return (SQS_EVENT_SOURCES["national"] + shape.prefectures * (SQS_EVENT_SOURCES["prefecture"]
                                                                 + SQS_EVENT_SOURCES["municipality_tier"])
            + shape.municipalities * SQS_EVENT_SOURCES["municipality"])


def fixed_lines(shape: Shape, *, muni_azs: int = AZS) -> list[tuple[str, float, float]]:
    """(line, count, USD a month) of what the deployment costs with no traffic at all."""
    alarms, alarm_metrics = alarm_counts(shape)
    eps = endpoint_azs(shape, muni_azs=muni_azs)
    return [
        ("interface endpoints (endpoint-AZs × 730 h)", eps, eps * HOURS_PER_MONTH * usd("vpce_hour")),
        ("KMS keys (one signing key per municipality)", kms_keys(shape), kms_keys(shape) * usd("kms_key_month")),
        (f"alarms ({alarms} alarms, priced per metric)", alarm_metrics, alarm_metrics * usd("cw_alarm_metric")),
        ("custom metrics", custom_metrics(shape), custom_metrics(shape) * usd("cw_custom_metric")),
        ("dashboards", dashboards(shape), dashboards(shape) * usd("cw_dashboard")),
        ("trails (management events: first copy free)", shape.accounts, 0.0),
        ("idle SQS pollers (event sources)", event_sources(shape),
         event_sources(shape) * IDLE_POLLER_RECEIVES_A_MONTH * usd("sqs_request")),
        ("baseline logs (flow logs per VPC, trail per account), GB", vpcs(shape) * BASELINE_LOG_GB_PER_VPC
         + shape.accounts * BASELINE_TRAIL_LOG_GB_PER_ACCOUNT,
         (vpcs(shape) * BASELINE_LOG_GB_PER_VPC + shape.accounts * BASELINE_TRAIL_LOG_GB_PER_ACCOUNT)
         * usd("cw_logs_ingest")),
        ("EventBridge schedule (sealer)", 1, usd("eventbridge_schedule")),
    ]


def standing_data_lines(residents: int) -> list[tuple[str, float, float]]:
    """Storage that depends on the residents held, not on traffic: both identity tables after the load (a
    current and a history item per resident, the blind index), and a year of alive-check provision records
    (pro rata to residents), and the municipality tiers' local records (one entry and its household index entry
    per resident after the load; decision 0044)."""
    identity_gb = 2 * residents * (2 * IDENTITY_ITEM_KB + INDEX_ENTRY_KB) / 1024 ** 2
    local_gb = residents * (LOCAL_RECORD_ITEM_KB + INDEX_ENTRY_KB) / 1024 ** 2
    records = ALIVE_CHECK_RECORDS * residents / RESIDENTS
    log_gb = records * (PROVISION_LOG_ENTRY_KB + 0.1 + INDEX_ENTRY_KB) / 1024 ** 2
    return [
        ("identity tables (prefecture + national), GB", identity_gb,
         max(0.0, identity_gb - 25) * usd("ddb_storage") + identity_gb * usd("ddb_pitr")),
        ("provision log, per year of alive checks, GB", log_gb, log_gb * (usd("ddb_storage") + usd("ddb_pitr"))),
        ("local-record tables (municipality tiers), GB", local_gb, local_gb * (usd("ddb_storage") + usd("ddb_pitr"))),
    ]


def cuts(yen: float = YEN_PER_USD) -> list[tuple[str, float, str, str]]:
    """(measure, USD a month saved for the country, effect on isolation, verdict)."""
    # The CS's endpoints only (SQS, KMS): the counter API's execute-api endpoint keeps both AZs.
    cs_endpoints = len([e for e in INTERFACE_ENDPOINTS["municipality_tier"] if e != "execute-api"])
    ep_saving = PREFECTURES * cs_endpoints * (AZS - 1) * HOURS_PER_MONTH * usd("vpce_hour")
    merge_saving = (PREFECTURES * len(INTERFACE_ENDPOINTS["municipality_tier"]) * AZS * HOURS_PER_MONTH
                    * usd("vpce_hour"))
    per_municipality_vpcs = (MUNICIPALITIES - PREFECTURES) * 2 * AZS * HOURS_PER_MONTH * usd("vpce_hour")
    key_saving = (MUNICIPALITIES - PREFECTURES) * usd("kms_key_month")
    per_alarm_saving = (MUNICIPALITIES * CS_ALARM_METRICS_PER_MUNICIPALITY - 2 * PREFECTURES) * usd("cw_alarm_metric")
    return [
        ("municipality-tier SQS and KMS endpoints in one AZ instead of two", ep_saving,
         "none: each tier keeps its own VPC, endpoints and endpoint policies",
         ("do it: the CS is asynchronous (S3 retries the invocation, then the failed-event queue); an AZ outage "
          "delays exports, loses none. The counter API's execute-api endpoint keeps two AZs: a resident waits")),
        ("one municipality-tier VPC per prefecture (not per municipality)", 0.0, "none",
         f"already so (docs/decisions/0002); a VPC per municipality would add ${per_municipality_vpcs:,.0f} a month"),
        ("one CS alarm per prefecture (Metrics Insights query) instead of one per 10 CSs", per_alarm_saving, "none",
         "worth it if Metrics Insights alarms are priced per alarm, not per function queried (not verified)"),
        ("one signing key per prefecture's municipality tier instead of per municipality", key_saving,
         ("weakens it: a signature would no longer say which municipality sent a notice, so one compromised CS "
          "could send notices in its neighbours' names; key policies decide who may sign, not what a signature "
          "proves"),
         f"do not: ¥{key_saving * 12 * yen:,.0f} a year against the point of the signatures"),
        ("merge the municipality tier into the prefecture's VPC", merge_saving,
         "breaks it: CS roles would share endpoints and network with the prefecture server", "do not"),
    ]


# --- output -----------------------------------------------------------------------------------------------------


def number(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 or float(x).is_integer() else f"{x:,.1f}"


def plain(x: float) -> str:
    """A price without exponent notation: 0.0000133334, not 1.33334e-05."""
    return f"{x:.10f}".rstrip("0").rstrip(".") if x else "0"


def money(x: float, yen: float) -> str:
    return f"${x:,.2f} (¥{x * yen:,.0f})" if x < 100 else f"${x:,.0f} (¥{x * yen:,.0f})"


def table(headers: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "markdown":
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def heading(text: str, fmt: str) -> str:
    return f"#### {text}\n" if fmt == "markdown" else f"\n{text}\n{'=' * len(text)}"


def report(fmt: str = "text", yen: float = YEN_PER_USD) -> str:
    out: list[str] = []
    miss = decrypt_miss_rate()
    bills = [(s.name, notice_bill(s)) for s in SCENARIOS]
    alive = batch_bill(ALIVE_CHECK_RECORDS, miss)
    bills.append(("a 79-million-record alive check (batch provision)", alive))

    out.append(heading("(i) Variable cost and time, Tokyo", fmt))
    line_names = list(bills[0][1].lines)
    headers = ["line", *[name for name, _ in bills]]
    rows = [[ln, *[money(b.lines[ln], yen) for _, b in bills]] for ln in line_names]
    rows.append(["**total**" if fmt == "markdown" else "TOTAL", *[money(b.total, yen) for _, b in bills]])
    per = [f"${b.total / (b.units.get('notices') or b.units['records']) * 1e6:,.0f} per million"
           for _, b in bills]
    rows.append(["per million notices / records", *per])
    hours = [f"{b.hours:,.1f} h" for _, b in bills]
    rows.append(["time if it all arrived at once", *hours])
    units = [f"{b.units['WRU'] / 1e6:,.1f} M WRU, {b.units['RRU'] / 1e6:,.1f} M RRU, {b.units['GB-s']:,.0f} GB-s"
             for _, b in bills]
    rows.append(["units (checkable)", *units])
    out.append(table(headers, rows, fmt))
    month = SCENARIOS[0]
    out.append("")
    out.append(
        f"Time: notice scenarios drain through the national processor at {PROCESSOR_CONCURRENCY} instances "
        f"({national_rate(month):,.0f} notices/s at a month's file sizes, {national_rate(SCENARIOS[2]):,.0f} at full "
        f"messages) plus the national table's on-demand warm-up; a month's notices arrive over "
        f"{WORKING_DAYS} working days, so the month uses {month.notices / national_rate(month) / 3600:.2f} h of that "
        f"capacity. The alive check runs at batch concurrency {BATCH_CONCURRENCY}, "
        f"{alive.units['seconds per chunk']:.1f} s per chunk of {CHUNK_ROWS:,} with {miss:.0%} of data keys not "
        f"cached (an instance keeps up to {UNWRAPPED_KEY_CACHE:,} unwrapped data keys).")
    out.append("")
    k1, k100 = lookup_cost_per_record(1, miss), lookup_cost_per_record(100, miss)
    out.append(f"A look-up costs {money(k1 * 1e6, yen)} per million single-code look-ups and "
               f"{money(k100 * 1e6, yen)} per million records in look-ups of 100 codes "
               f"(API Gateway, Lambda, {lookup_units(1)['wru']:.0f} WRU and {lookup_units(1)['rru']:.0f} RRU per "
               "single-code look-up, KMS, CloudTrail).")

    out.append("")
    out.append(heading("(ii) Where the first limit bites", fmt))
    rows = []
    for lim in limits():
        use = "—" if math.isinf(lim.limit) else f"{lim.use:.0%}"
        rows.append([lim.name, "unlimited" if math.isinf(lim.limit) else f"{lim.limit:,.0f}", number(lim.demand),
                     use, lim.where, lim.answer])
    out.append(table(["limit", "limit", "demand at peak", "use", "where", "the design's answer"], rows, fmt))

    out.append("")
    out.append(heading("(iii) Fixed monthly cost (no traffic)", fmt))
    nag, cty = fixed_lines(NAGANO), fixed_lines(COUNTRY)
    rows = [[name, number(nc), money(nu, yen), number(cc), money(cu, yen)]
            for (name, nc, nu), (_, cc, cu) in zip(nag, cty, strict=True)]
    nag_total, cty_total = sum(x[2] for x in nag), sum(x[2] for x in cty)
    rows.append(["**fixed total**" if fmt == "markdown" else "FIXED TOTAL", "", money(nag_total, yen), "",
                 money(cty_total, yen)])
    nag_data, cty_data = standing_data_lines(NAGANO_RESIDENTS), standing_data_lines(RESIDENTS)
    for (name, nc, nu), (_, cc, cu) in zip(nag_data, cty_data, strict=True):
        rows.append([f"standing data: {name}", f"{nc:,.0f}", money(nu, yen), f"{cc:,.0f}", money(cu, yen)])
    out.append(table(["line", "Nagano (77 municipalities)", "Nagano $/month", "country (47 / 1,741)",
                      "country $/month"], rows, fmt))
    budget_month = JUKINET_2002_YEN_PER_YEAR / 12
    yearly = (cty_total + sum(x[2] for x in cty_data)) * 12 * yen
    variable_year = (bills[0][1].total * 10 + bills[1][1].total * 2 + alive.total) * yen
    out.append("")
    out.append(
        f"Country: fixed {money(cty_total, yen)} a month; with standing data and a year of notices (ten average "
        f"months, two March peaks) and one alive check, ¥{(yearly + variable_year) / 1e6:,.1f} million a year — "
        f"{(yearly + variable_year) / JUKINET_2002_YEN_PER_YEAR:.2%} of the 2002 estimate of "
        f"¥{JUKINET_2002_YEN_PER_YEAR / 1e9:.3f} billion a year (¥{budget_month / 1e6:,.0f} million a month). "
        f"The initial load is a one-off {money(bills[2][1].total, yen)}. From the second year each yearly rotation "
        f"of the {symmetric_keys(COUNTRY)} symmetric keys adds {money(symmetric_keys(COUNTRY) * usd('kms_key_month'), yen)} "
        "a month.")

    out.append("")
    out.append(heading("(iv) Where the fixed cost can be cut without weakening tier isolation", fmt))
    rows = [[m, money(s, yen), iso, v] for m, s, iso, v in cuts(yen)]
    out.append(table(["measure", "saves a month (country)", "tier isolation", "verdict"], rows, fmt))
    return "\n".join(out)


def sources(fmt: str = "text") -> str:
    rows = [[p.what, plain(p.usd), p.unit, p.url, p.dated] for p in PRICES.values()]
    rows += [[f"quota: {q.unit}", f"{q.value:,.0f}", "", q.url, q.dated] for q in QUOTAS.values()]
    return table(["price or quota", "value (USD)", "unit", "source", "date / note"], rows, fmt)


def assumptions(fmt: str = "text") -> str:
    rows = [[name, text] for name, text in ASSUMPTIONS.items()]
    return table(["constant", "assumption"], rows, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument("--yen-per-usd", type=float, default=YEN_PER_USD)
    parser.add_argument("--sources", action="store_true", help="also print the sources and the assumptions")
    args = parser.parse_args(argv)
    print(report(args.format, args.yen_per_usd))
    if args.sources:
        print()
        print(heading("Sources", args.format))
        print(sources(args.format))
        print()
        print(heading("Assumptions", args.format))
        print(assumptions(args.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
