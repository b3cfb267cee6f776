-- 1. A time-ordered key for the raw events. Dashboards ask for time ranges ("the last
-- hour", "yesterday against today"); a key that starts with the hour lets ClickHouse
-- skip every granule outside the range instead of reading the month's partition whole.
-- The deduplication of ReplacingMergeTree still holds: a redelivered event is the same
-- message with the same ts, so it lands on the same key and replaces its first copy.
-- The table is rebuilt under its own name: same columns, new key, rows copied, then the
-- two tables swapped in one atomic EXCHANGE (an Atomic database, the default) and the
-- old one dropped. Apply it before any sink inserts (sinks run `migrate` at start-up).
-- 0. Events on a plan's escalation step say so (a request escalated to get there): the
-- rollups count escalations apart from fallbacks without regrouping events per request.
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS escalated UInt8 DEFAULT 0;

CREATE TABLE IF NOT EXISTS {db}.routing_events_by_time AS {db}.routing_events
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), tenant, kind, event_id);

INSERT INTO {db}.routing_events_by_time SELECT * FROM {db}.routing_events FINAL;

EXCHANGE TABLES {db}.routing_events AND {db}.routing_events_by_time;

DROP TABLE IF EXISTS {db}.routing_events_by_time;

-- 2. Rollups per minute and per hour, so that dashboards stay fast as the raw events
-- grow: one row per time bucket and combination of tenant, route, model, event kind and
-- shadow flag, holding counts (events, errors, fallbacks, escalations, cache hits,
-- structured-output validations and their outcomes), sums (tokens, cost, latency) and a t-digest state of
-- the latency. Group by route or by model at query time (both are in the key); merge
-- the quantile states with quantilesTDigestMerge(0.5, 0.95, 0.99)(latency). The minute
-- table serves recent windows, the hour table long ones (a week is 168 buckets).
-- Status, validation result, cache hit and fallback depth are counters rather than key
-- columns: as keys they would multiply the rows per bucket until a rollup was as large
-- as the events it summarizes.
--
-- A materialized view sees the inserted blocks, not the ReplacingMergeTree's deduplicated
-- result, so a redelivered event counted here would count twice: the sink drops event ids
-- it has already inserted (remembered for sink.dedup_window_s, seeded from the raw table
-- at start-up) before they reach the views.
CREATE TABLE IF NOT EXISTS {db}.routing_rollup_1m
(
    minute          DateTime('UTC'),
    tenant          LowCardinality(String),
    route           LowCardinality(String),
    model           LowCardinality(String),
    kind            LowCardinality(String),
    shadow          UInt8,
    events          SimpleAggregateFunction(sum, UInt64),
    errors          SimpleAggregateFunction(sum, UInt64),
    fell_back       SimpleAggregateFunction(sum, UInt64),
    escalations     SimpleAggregateFunction(sum, UInt64),
    cache_hits      SimpleAggregateFunction(sum, UInt64),
    validated       SimpleAggregateFunction(sum, UInt64),
    valid           SimpleAggregateFunction(sum, UInt64),
    repaired        SimpleAggregateFunction(sum, UInt64),
    reasked         SimpleAggregateFunction(sum, UInt64),
    input_tokens    SimpleAggregateFunction(sum, UInt64),
    output_tokens   SimpleAggregateFunction(sum, UInt64),
    cost_usd        SimpleAggregateFunction(sum, Float64),
    latency_ms_sum  SimpleAggregateFunction(sum, Float64),
    latency         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant, route, model, kind, shadow);

CREATE TABLE IF NOT EXISTS {db}.routing_rollup_1h
(
    hour            DateTime('UTC'),
    tenant          LowCardinality(String),
    route           LowCardinality(String),
    model           LowCardinality(String),
    kind            LowCardinality(String),
    shadow          UInt8,
    events          SimpleAggregateFunction(sum, UInt64),
    errors          SimpleAggregateFunction(sum, UInt64),
    fell_back       SimpleAggregateFunction(sum, UInt64),
    escalations     SimpleAggregateFunction(sum, UInt64),
    cache_hits      SimpleAggregateFunction(sum, UInt64),
    validated       SimpleAggregateFunction(sum, UInt64),
    valid           SimpleAggregateFunction(sum, UInt64),
    repaired        SimpleAggregateFunction(sum, UInt64),
    reasked         SimpleAggregateFunction(sum, UInt64),
    input_tokens    SimpleAggregateFunction(sum, UInt64),
    output_tokens   SimpleAggregateFunction(sum, UInt64),
    cost_usd        SimpleAggregateFunction(sum, Float64),
    latency_ms_sum  SimpleAggregateFunction(sum, Float64),
    latency         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tenant, route, model, kind, shadow);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.routing_rollup_1m_mv TO {db}.routing_rollup_1m AS
SELECT
    toStartOfMinute(ts)                                    AS minute,
    tenant, route, model, kind, shadow,
    toUInt64(count())                                       AS events,
    toUInt64(countIf(status = 'error'))                     AS errors,
    toUInt64(countIf(fallback_depth > 0 AND escalated = 0)) AS fell_back,
    toUInt64(countIf(escalated = 1))                        AS escalations,
    toUInt64(countIf(cache_hit = 1))                        AS cache_hits,
    toUInt64(countIf(validation != ''))                     AS validated,
    toUInt64(countIf(validation IN ('passed', 'repaired', 'reasked'))) AS valid,
    toUInt64(countIf(validation = 'repaired'))              AS repaired,
    toUInt64(countIf(validation = 'reasked'))               AS reasked,
    toUInt64(sum(input_tokens))                             AS input_tokens,
    toUInt64(sum(output_tokens))                            AS output_tokens,
    sum(cost_usd)                                           AS cost_usd,
    sum(latency_ms)                                         AS latency_ms_sum,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms)      AS latency
FROM {db}.routing_events
GROUP BY minute, tenant, route, model, kind, shadow;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.routing_rollup_1h_mv TO {db}.routing_rollup_1h AS
SELECT
    toStartOfHour(ts)                                    AS hour,
    tenant, route, model, kind, shadow,
    toUInt64(count())                                       AS events,
    toUInt64(countIf(status = 'error'))                     AS errors,
    toUInt64(countIf(fallback_depth > 0 AND escalated = 0)) AS fell_back,
    toUInt64(countIf(escalated = 1))                        AS escalations,
    toUInt64(countIf(cache_hit = 1))                        AS cache_hits,
    toUInt64(countIf(validation != ''))                     AS validated,
    toUInt64(countIf(validation IN ('passed', 'repaired', 'reasked'))) AS valid,
    toUInt64(countIf(validation = 'repaired'))              AS repaired,
    toUInt64(countIf(validation = 'reasked'))               AS reasked,
    toUInt64(sum(input_tokens))                             AS input_tokens,
    toUInt64(sum(output_tokens))                            AS output_tokens,
    sum(cost_usd)                                           AS cost_usd,
    sum(latency_ms)                                         AS latency_ms_sum,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms)      AS latency
FROM {db}.routing_events
GROUP BY hour, tenant, route, model, kind, shadow;

-- the events stored before the views existed (none are inserted while migrations run)
INSERT INTO {db}.routing_rollup_1m
SELECT
    toStartOfMinute(ts)                                    AS minute,
    tenant, route, model, kind, shadow,
    toUInt64(count())                                       AS events,
    toUInt64(countIf(status = 'error'))                     AS errors,
    toUInt64(countIf(fallback_depth > 0 AND escalated = 0)) AS fell_back,
    toUInt64(countIf(escalated = 1))                        AS escalations,
    toUInt64(countIf(cache_hit = 1))                        AS cache_hits,
    toUInt64(countIf(validation != ''))                     AS validated,
    toUInt64(countIf(validation IN ('passed', 'repaired', 'reasked'))) AS valid,
    toUInt64(countIf(validation = 'repaired'))              AS repaired,
    toUInt64(countIf(validation = 'reasked'))               AS reasked,
    toUInt64(sum(input_tokens))                             AS input_tokens,
    toUInt64(sum(output_tokens))                            AS output_tokens,
    sum(cost_usd)                                           AS cost_usd,
    sum(latency_ms)                                         AS latency_ms_sum,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms)      AS latency
FROM {db}.routing_events FINAL
GROUP BY minute, tenant, route, model, kind, shadow;

INSERT INTO {db}.routing_rollup_1h
SELECT
    toStartOfHour(ts)                                    AS hour,
    tenant, route, model, kind, shadow,
    toUInt64(count())                                       AS events,
    toUInt64(countIf(status = 'error'))                     AS errors,
    toUInt64(countIf(fallback_depth > 0 AND escalated = 0)) AS fell_back,
    toUInt64(countIf(escalated = 1))                        AS escalations,
    toUInt64(countIf(cache_hit = 1))                        AS cache_hits,
    toUInt64(countIf(validation != ''))                     AS validated,
    toUInt64(countIf(validation IN ('passed', 'repaired', 'reasked'))) AS valid,
    toUInt64(countIf(validation = 'repaired'))              AS repaired,
    toUInt64(countIf(validation = 'reasked'))               AS reasked,
    toUInt64(sum(input_tokens))                             AS input_tokens,
    toUInt64(sum(output_tokens))                            AS output_tokens,
    sum(cost_usd)                                           AS cost_usd,
    sum(latency_ms)                                         AS latency_ms_sum,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms)      AS latency
FROM {db}.routing_events FINAL
GROUP BY hour, tenant, route, model, kind, shadow
