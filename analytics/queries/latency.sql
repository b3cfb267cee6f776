-- Latency percentiles (completed requests, as the caller waited) and error rates (failed
-- requests) per route and model, in buckets of bucket_s seconds over [since, until);
-- time to first token where answers were streamed (NULL where none was).
SELECT
    toStartOfInterval(finished_at, INTERVAL {bucket_s:UInt32} SECOND) AS bucket,
    route,
    served_by                                          AS model,
    count()                                            AS requests,
    sum(failed)                                        AS errors,
    round(errors / requests, 4)                        AS error_rate,
    round(quantileIf(0.5)(latency_ms, failed = 0), 1)  AS p50_ms,
    round(quantileIf(0.95)(latency_ms, failed = 0), 1) AS p95_ms,
    round(quantileIf(0.99)(latency_ms, failed = 0), 1) AS p99_ms,
    round(quantileIf(0.5)(ttft_ms, failed = 0), 1)     AS ttft_p50_ms,
    round(quantileIf(0.95)(ttft_ms, failed = 0), 1)    AS ttft_p95_ms
FROM ({requests})
GROUP BY bucket, route, model
ORDER BY bucket, route, model
