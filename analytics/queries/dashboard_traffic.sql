-- The dashboard's traffic panels in one pass over the rollups (fast however large the
-- raw events grow): per time bucket of {bucket_s} seconds in [since, until), and over the
-- whole window, for everything together and per route, model and tenant:
--   requests, errors     final outcomes (completion or failure) callers saw, shadows left out
--   attempts, failed_attempts   backend calls and those that failed: a failure event names
--                        no model, so a model's error rate is its failed calls' share
--   cost_usd, tokens     what the backend calls cost, shadow copies included (paid for too)
--   latency_ms           [p50, p95, p99] of completed requests, merged t-digest states
-- dimension says which breakdown a row belongs to ('all', 'route', 'model', 'tenant'),
-- key the route, model or tenant (empty for 'all'); is_total = 1 for the whole window.
-- The counts come from a rollup: routing_rollup_1m (rollup_time = minute) or, for
-- buckets of whole hours, routing_rollup_1h (rollup_time = hour); analytics/dashboard.py
-- picks one. The latencies come from routing_latency, states of the same breakdowns
-- (migration 009), at the coarsest period that tiles a bucket: six-hour states for
-- buckets of whole six hours, hourly ones for whole hours, else per-minute ones. A
-- handful of compressed states per bucket, where the rollups' per tenant, route and
-- model states would hold every latency of the window: a month took ~300 ms to merge. A
-- row without completed requests gets no latency row: [] (the LEFT JOIN's default),
-- read as no percentiles.
SELECT counts.bucket AS bucket, counts.is_total AS is_total, counts.dimension AS dimension, counts.key AS key,
       requests, failed, attempts, failed_attempts, spend_usd, tokens_in, tokens_out, latencies.latency_ms AS latency_ms
FROM (
    SELECT
        toStartOfInterval({rollup_time:Identifier}, INTERVAL {bucket_s:UInt32} SECOND)     AS bucket,
        toUInt8(grouping(bucket) = 1)                                          AS is_total,
        multiIf(grouping(route) = 0, 'route', grouping(model) = 0, 'model', grouping(tenant) = 0, 'tenant', 'all') AS dimension,
        multiIf(dimension = 'route', route, dimension = 'model', model, dimension = 'tenant', tenant, '') AS key,
        sumIf(events, kind IN ('completion', 'failure') AND shadow = 0)        AS requests,
        sumIf(events, kind = 'failure' AND shadow = 0)                         AS failed,
        sumIf(events, kind = 'attempt')                                        AS attempts,
        sumIf(errors, kind = 'attempt')                                        AS failed_attempts,
        sumIf(cost_usd, kind = 'attempt')                                      AS spend_usd,
        sumIf(input_tokens, kind = 'attempt')                                  AS tokens_in,
        sumIf(output_tokens, kind = 'attempt')                                 AS tokens_out
    FROM {db}.{rollup:Identifier}
    WHERE {rollup_time:Identifier} >= {since:DateTime64(3, 'UTC')}
      AND {rollup_time:Identifier} < {until:DateTime64(3, 'UTC')}
      AND kind IN ('attempt', 'completion', 'failure')
    GROUP BY GROUPING SETS (
        (bucket), (bucket, route), (bucket, model), (bucket, tenant),
        (), (route), (model), (tenant)
    )
) AS counts
LEFT JOIN (
    SELECT
        toStartOfInterval(period, INTERVAL {bucket_s:UInt32} SECOND)           AS bucket,
        toUInt8(grouping(bucket) = 1)                                          AS is_total,
        dimension,
        key,
        quantilesTDigestMerge(0.5, 0.95, 0.99)(latency)                        AS latency_ms
    FROM {db}.routing_latency
    WHERE period_s = multiIf({bucket_s:UInt32} % 21600 = 0, 21600, {bucket_s:UInt32} % 3600 = 0, 3600, 60)
      AND period >= {since:DateTime64(3, 'UTC')}
      AND period < {until:DateTime64(3, 'UTC')}
    GROUP BY GROUPING SETS ((bucket, dimension, key), (dimension, key))
) AS latencies
ON latencies.bucket = counts.bucket AND latencies.is_total = counts.is_total
   AND latencies.dimension = counts.dimension AND latencies.key = counts.key
ORDER BY is_total, dimension, key, bucket
