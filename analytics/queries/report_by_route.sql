-- Requests, errors, fallbacks, tokens, cost and latency percentiles per route.
SELECT
    route,
    countIf(kind = 'decision' AND shadow = 0)            AS routed,
    countIf(kind IN ('completion', 'failure') AND shadow = 0) AS requests,
    countIf(kind = 'failure' AND shadow = 0)             AS errors,
    countIf(kind IN ('completion', 'failure') AND shadow = 0 AND fallback_depth > 0) AS fell_back,
    sumIf(input_tokens, kind = 'attempt')                AS input_tokens,
    sumIf(output_tokens, kind = 'attempt')               AS output_tokens,
    round(sumIf(cost_usd, kind = 'attempt'), 6)          AS cost_usd,
    round(quantileIf(0.5)(latency_ms, kind = 'completion' AND shadow = 0), 1)  AS p50_ms,
    round(quantileIf(0.95)(latency_ms, kind = 'completion' AND shadow = 0), 1) AS p95_ms,
    round(quantileIf(0.99)(latency_ms, kind = 'completion' AND shadow = 0), 1) AS p99_ms
FROM {db}.routing_events FINAL
WHERE route != ''
GROUP BY route
ORDER BY route
