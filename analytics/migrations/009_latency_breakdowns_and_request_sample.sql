-- Structures that keep the dashboard's long windows under 200 ms at millions of events.
--
-- 1. Latency quantile states per time bucket and dashboard dimension: everything ('all',
-- key ''), each route, model and tenant. The rollups hold one t-digest state per
-- tenant, route, model and kind, and a state of fewer than ~2,000 latencies is every
-- latency uncompressed: a week of hourly states is the week's latencies, one by one,
-- and merging them took ~300 ms per look at the traffic panel. Keyed by the breakdown
-- the panel shows instead, a bucket holds 17 states or so, each compressed.
-- period_s is the bucket's length: a minute, an hour or six hours, as the panel's
-- buckets (all three in one table, so that each insert writes one part, not three).
-- Fed from the per-minute rollup's inserts (each insert block's states merged again),
-- so the sink's inserts into the raw events pay little more. Completed requests only,
-- shadow copies left out, as the panel reads.
CREATE TABLE IF NOT EXISTS {db}.routing_latency
(
    period_s   UInt32,
    period     DateTime('UTC'),
    dimension  LowCardinality(String),
    key        LowCardinality(String),
    latency    AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(period)
ORDER BY (period_s, period, dimension, key);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.routing_latency_mv TO {db}.routing_latency AS
SELECT period_s, toDateTime(intDiv(toUInt32(minute), period_s) * period_s, 'UTC') AS period, breakdown.1 AS dimension,
       breakdown.2 AS key, quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {db}.routing_rollup_1m
ARRAY JOIN [60, 3600, 21600] AS period_s
ARRAY JOIN [('all', ''), ('route', route), ('model', model), ('tenant', tenant)] AS breakdown
WHERE kind = 'completion' AND shadow = 0
GROUP BY period_s, period, dimension, key;

-- 2. The events that make up requests (attempts, completions, failures; shadow copies
-- left out: they answer nobody), narrowed to what a regression test measures and keyed
-- by hour, route and sample_key = cityHash64(request_id). Every event of one request
-- carries the same sample_key, so "the requests of route R whose sample_key is below C"
-- is a uniform random sample of R's requests (the hash knows nothing of latency, cost or
-- outcome), and the key lets ClickHouse read only those rows of each hour instead of the
-- whole window: queries/regression_samples.sql. Small granules (128 rows) and small
-- compressed blocks (1-4 KiB), because a long window reads a few rows from each of
-- hundreds of (hour, route) ranges, and each read decompresses a whole block of every
-- column: at the default 64 KiB blocks a week's sample took three times as long. The
-- price is a worse compression ratio on this (narrow) copy of the request events.
-- ReplacingMergeTree, as the raw table, on what makes an event's id (request, kind,
-- attempt number; shadow copies are not here): a redelivered event replaces its copy.
-- The primary index stops at sample_key: the ids would only make it larger to load.
CREATE TABLE IF NOT EXISTS {db}.request_sample_events
(
    ts              DateTime64(3, 'UTC'),
    route           LowCardinality(String),
    sample_key      UInt64,
    request_id      String,
    kind            LowCardinality(String),
    model           LowCardinality(String),
    policy_version  LowCardinality(String),
    attempt         UInt16,
    cost_usd        Float64,
    latency_ms      Float64,
    validation      LowCardinality(String),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
PRIMARY KEY (toStartOfHour(ts), route, sample_key)
ORDER BY (toStartOfHour(ts), route, sample_key, request_id, kind, attempt)
SETTINGS index_granularity = 128, min_compress_block_size = 1024, max_compress_block_size = 4096;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.request_sample_events_mv TO {db}.request_sample_events AS
SELECT ts, route, cityHash64(request_id) AS sample_key, request_id, kind, model, policy_version, attempt,
       cost_usd, latency_ms, validation, inserted_at
FROM {db}.routing_events
WHERE shadow = 0 AND kind IN ('attempt', 'completion', 'failure');

-- 3. The same for one request in 16 (sample_key below 2^60), keyed by day instead of
-- hour. Over a month each (hour, route) range costs a granule read for a handful of
-- sampled rows: 2,700 ranges for three weeks of five routes, ~0.1 ms each. A route whose
-- sample takes less than 1/16 of its requests (a long window) is read from here, a day
-- per range; one needing more (a short window, a quiet route) from the hourly table.
-- Fed from the hourly table's inserts (its backfill below included), so the hash is
-- computed once.
CREATE TABLE IF NOT EXISTS {db}.request_sample_events_sparse AS {db}.request_sample_events
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
PRIMARY KEY (toStartOfDay(ts), route, sample_key)
ORDER BY (toStartOfDay(ts), route, sample_key, request_id, kind, attempt)
SETTINGS index_granularity = 128, min_compress_block_size = 1024, max_compress_block_size = 4096;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.request_sample_events_sparse_mv TO {db}.request_sample_events_sparse AS
SELECT * FROM {db}.request_sample_events WHERE sample_key < 1152921504606846976;

-- what was stored before the views existed (none are inserted while migrations run)
INSERT INTO {db}.routing_latency
SELECT period_s, toDateTime(intDiv(toUInt32(minute), period_s) * period_s, 'UTC') AS period, breakdown.1 AS dimension,
       breakdown.2 AS key, quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {db}.routing_rollup_1m
ARRAY JOIN [60, 3600, 21600] AS period_s
ARRAY JOIN [('all', ''), ('route', route), ('model', model), ('tenant', tenant)] AS breakdown
WHERE kind = 'completion' AND shadow = 0
GROUP BY period_s, period, dimension, key;

INSERT INTO {db}.request_sample_events
SELECT ts, route, cityHash64(request_id), request_id, kind, model, policy_version, attempt,
       cost_usd, latency_ms, validation, inserted_at
FROM {db}.routing_events FINAL
WHERE shadow = 0 AND kind IN ('attempt', 'completion', 'failure')
