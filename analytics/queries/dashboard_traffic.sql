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
-- The rollup read is a parameter: routing_rollup_1m (rollup_time = minute) or, for
-- buckets of whole hours, routing_rollup_1h (rollup_time = hour); analytics/dashboard.py
-- picks one.
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
    sumIf(output_tokens, kind = 'attempt')                                 AS tokens_out,
    quantilesTDigestMergeIf(0.5, 0.95, 0.99)(latency, kind = 'completion' AND shadow = 0) AS latency_ms
FROM {db}.{rollup:Identifier}
WHERE {rollup_time:Identifier} >= {since:DateTime64(3, 'UTC')}
  AND {rollup_time:Identifier} < {until:DateTime64(3, 'UTC')}
  AND kind IN ('attempt', 'completion', 'failure')
GROUP BY GROUPING SETS (
    (bucket), (bucket, route), (bucket, model), (bucket, tenant),
    (), (route), (model), (tenant)
)
ORDER BY is_total, dimension, key, bucket
