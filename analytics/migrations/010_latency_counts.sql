-- A count of completions in every latency state, so that each bucket of routing_latency
-- can be checked against the per-minute rollup it is fed from (analytics/repair.py):
-- a t-digest state cannot say how many latencies it holds, and without a count a state
-- that missed an insert (a sink killed between the rollup's part and this table's)
-- would look like any other. The view is recreated with the count and the table is
-- rebuilt from the rollup, so that old buckets carry it too (none are inserted while
-- migrations run).
ALTER TABLE {db}.routing_latency ADD COLUMN IF NOT EXISTS events SimpleAggregateFunction(sum, UInt64) AFTER key;

DROP VIEW IF EXISTS {db}.routing_latency_mv;

CREATE MATERIALIZED VIEW {db}.routing_latency_mv TO {db}.routing_latency AS
SELECT period_s, toDateTime(intDiv(toUInt32(minute), period_s) * period_s, 'UTC') AS period, breakdown.1 AS dimension,
       breakdown.2 AS key, toUInt64(sum(events)) AS events, quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {db}.routing_rollup_1m
ARRAY JOIN [60, 3600, 21600] AS period_s
ARRAY JOIN [('all', ''), ('route', route), ('model', model), ('tenant', tenant)] AS breakdown
WHERE kind = 'completion' AND shadow = 0
GROUP BY period_s, period, dimension, key;

TRUNCATE TABLE {db}.routing_latency;

INSERT INTO {db}.routing_latency (period_s, period, dimension, key, events, latency)
SELECT period_s, toDateTime(intDiv(toUInt32(minute), period_s) * period_s, 'UTC') AS period, breakdown.1 AS dimension,
       breakdown.2 AS key, toUInt64(sum(events)) AS events, quantilesTDigestMergeState(0.5, 0.95, 0.99)(latency) AS latency
FROM {db}.routing_rollup_1m
ARRAY JOIN [60, 3600, 21600] AS period_s
ARRAY JOIN [('all', ''), ('route', route), ('model', model), ('tenant', tenant)] AS breakdown
WHERE kind = 'completion' AND shadow = 0
GROUP BY period_s, period, dimension, key
