-- One row per routing decision, backend attempt, completion, failure or rejection.
-- ReplacingMergeTree on the deterministic event_id: a redelivered event replaces its
-- first copy instead of counting twice (queries read with FINAL).
CREATE TABLE IF NOT EXISTS {db}.routing_events
(
    event_id        String,
    request_id      String,
    tenant          LowCardinality(String),
    kind            LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    route           LowCardinality(String),
    model           LowCardinality(String),
    provider        LowCardinality(String),
    policy_version  LowCardinality(String),
    task_type       LowCardinality(String),
    status          LowCardinality(String),
    error_kind      LowCardinality(String),
    input_tokens    UInt32,
    output_tokens   UInt32,
    cost_usd        Float64,
    latency_ms      Float64,
    attempt         UInt16,
    fallback_depth  UInt8,
    detail          String,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, kind, event_id)
