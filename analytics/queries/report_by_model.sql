-- Requests, errors, tokens, cost and latency percentiles per model.
-- Shadow copies are paid for (tokens, cost) but answer nobody (requests, errors, latency).
-- Tokens and cost come from attempts (what was paid for); requests, errors and latency
-- from final outcomes (what callers saw).
SELECT
    model,
    countIf(kind IN ('completion', 'failure') AND shadow = 0) AS requests,
    countIf(kind = 'failure' AND shadow = 0)             AS errors,
    countIf(kind = 'attempt')                            AS attempts,
    countIf(kind = 'attempt' AND status = 'error')       AS failed_attempts,
    sumIf(input_tokens, kind = 'attempt')                AS input_tokens,
    sumIf(output_tokens, kind = 'attempt')               AS output_tokens,
    round(sumIf(cost_usd, kind = 'attempt'), 6)          AS cost_usd,
    round(quantileIf(0.5)(latency_ms, kind = 'completion' AND shadow = 0), 1)  AS p50_ms,
    round(quantileIf(0.95)(latency_ms, kind = 'completion' AND shadow = 0), 1) AS p95_ms,
    round(quantileIf(0.99)(latency_ms, kind = 'completion' AND shadow = 0), 1) AS p99_ms
FROM {db}.routing_events FINAL
WHERE kind != 'decision' AND model != ''
GROUP BY model
ORDER BY model
