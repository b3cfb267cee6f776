-- Raw prompt text, redacted by the router, for the requests whose tenant opted in
-- ([prompts] store): read back by `turnout whatif` to route recorded requests through a
-- candidate policy, and by analysts. One row per request: ReplacingMergeTree on the
-- request id (a redelivered copy carries the same ts, the request's created_at, so it
-- lands on the same key and replaces the first; the sink also drops ids it inserted
-- recently). The key starts with the hour, as the events' does: replays ask for windows.
--
-- messages and signals mirror the Avro records turnout.ChatMessage and turnout.Signals
-- (named tuples: clickhouse-connect inserts and returns them as dicts).
--
-- The TTL below is the default of prompts.ttl_days. A migration cannot read settings:
-- the sink applies the configured value at start-up (analytics/retention.py, ALTER TABLE
-- ... MODIFY TTL, only when it differs), so changing prompts.ttl_days and restarting the
-- sink is enough.
CREATE TABLE IF NOT EXISTS {db}.prompts
(
    request_id      String,
    tenant          LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    policy_version  LowCardinality(String),
    messages        Array(Tuple(role LowCardinality(String), content String, name Nullable(String), images Array(String))),
    input           Array(String),
    model           Nullable(String),
    metadata        Map(String, String),
    signals         Tuple(
                        task_type LowCardinality(String),
                        task_confidence Float64,
                        task_method LowCardinality(String),
                        input_tokens Int64,
                        token_method LowCardinality(String),
                        turns Int64,
                        language LowCardinality(String),
                        language_confidence Float64,
                        expected_output_tokens Int64,
                        complexity Float64,
                        capabilities Array(LowCardinality(String)),
                        sensitive_kinds Array(LowCardinality(String))
                    ),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), tenant, request_id)
TTL toDateTime(ts) + toIntervalDay(30)
