-- A bounded uniform random sample of the requests whose final outcome (completion or
-- failure) falls in [since, until), summarised per route, serving model and policy
-- version: the samples behind regression tests (analytics/regressions.py,
-- analytics/sampling.py).
--
-- Sampled by sample_key = cityHash64(request_id) from request_sample_events (migration
-- 009: the raw events of requests keyed by hour, route and sample_key, shadows left out):
-- a route's requests with sample_key at most its cutoff (cutoffs[i] for routes[i]; a
-- route missing from routes is not read), then the per_route of them with the smallest
-- keys. The hash knows nothing of a request's outcome, so this is a simple random sample
-- of the route's requests in the window; a route with no more than per_route requests is
-- read whole.
-- The rest restates the cutoffs for the primary keys, so that only the sampled rows of
-- each hour or day are read: a route whose cutoff is below 2^60 (sparse_routes) is read
-- from request_sample_events_sparse, which holds exactly the requests with keys below
-- 2^60, a day per range; the others (dense_routes) from the hourly table, whole
-- (whole_routes) or up to the largest of their cutoffs (dense_cutoff).
--
-- A request is defined as in requests.sql (the same expressions, on the sampled events;
-- tests/integration/test_questions_sample.py checks that a window read whole gives
-- requests.sql's rows): served_by is the model that answered, else the last attempt's;
-- latency_ms counts for completed requests only; cost_usd sums the attempts (attempts are
-- read from one hour before `since`; other events only from `since`, since a request that
-- finished earlier is not in the window). Read with FINAL, as requests.sql reads the raw
-- events, so that a redelivered event not yet merged away counts once (it costs little
-- here: only the sampled key ranges are merged). Events are grouped into requests by
-- sample_key, a number (grouping by the id string took longer than the rest of the
-- query): two requests of one window sharing a 64-bit hash, about one chance in 10^10
-- for 60,000 requests, would count as one. feedback: every (metric, score) of the
-- sampled requests (a request scored twice on a metric counts twice).
SELECT
    route,
    served_by                                                   AS model,
    policy_version,
    count()                                                     AS requests,
    sum(failed)                                                 AS failures,
    groupArrayIf(latency_ms, failed = 0)                        AS latencies,
    groupArray(cost_usd)                                        AS costs,
    countIf(validation != '')                                   AS validated,
    countIf(validation IN ('passed', 'repaired', 'reasked'))    AS passed,
    arrayFlatten(groupArray(scores.scored))                     AS feedback
FROM (
    SELECT
        sample_key,
        any(request_id)                                              AS request_id,
        maxIf(ts, kind IN ('completion', 'failure'))                 AS finished_at,
        anyIf(route, kind IN ('completion', 'failure'))              AS route,
        anyIf(policy_version, kind IN ('completion', 'failure'))     AS policy_version,
        anyIf(model, kind IN ('completion', 'failure'))              AS final_model,
        if(final_model != '', final_model, argMaxIf(model, attempt, kind = 'attempt')) AS served_by,
        toUInt8(countIf(kind = 'failure') > 0)                       AS failed,
        anyIf(latency_ms, kind = 'completion')                       AS latency_ms,
        sumIf(cost_usd, kind = 'attempt')                            AS cost_usd,
        anyIf(validation, kind IN ('completion', 'failure'))         AS validation
    FROM (
        SELECT *
        FROM (
            SELECT request_id, sample_key, ts, kind, route, model, policy_version, attempt, cost_usd, latency_ms, validation
            FROM {db}.request_sample_events FINAL
            WHERE ts >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
              AND ts < {until:DateTime64(3, 'UTC')}
              AND route IN {dense_routes:Array(String)}
              AND (route IN {whole_routes:Array(String)} OR sample_key <= {dense_cutoff:UInt64})
            UNION ALL
            SELECT request_id, sample_key, ts, kind, route, model, policy_version, attempt, cost_usd, latency_ms, validation
            FROM {db}.request_sample_events_sparse FINAL
            WHERE ts >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
              AND ts < {until:DateTime64(3, 'UTC')}
              AND route IN {sparse_routes:Array(String)}
              AND sample_key <= {sparse_cutoff:UInt64}
        )
        WHERE sample_key <= {cutoffs:Array(UInt64)}[indexOf({routes:Array(String)}, route)]
          AND (kind = 'attempt' OR ts >= {since:DateTime64(3, 'UTC')})
    )
    GROUP BY sample_key
    HAVING countIf(kind IN ('completion', 'failure')) > 0
       AND finished_at >= {since:DateTime64(3, 'UTC')}
    ORDER BY sample_key
    LIMIT {per_route:UInt32} BY route
) AS sampled
LEFT JOIN (
    SELECT request_id, groupArray((metric, score)) AS scored
    FROM {db}.feedback FINAL
    GROUP BY request_id
) AS scores ON scores.request_id = sampled.request_id
GROUP BY route, model, policy_version
ORDER BY route, model, policy_version
