-- One row per request whose final outcome (completion or failure) falls in [since, until):
-- what the caller saw and what it cost. Shadow copies are left out: they answer nobody.
-- The other questions aggregate this row set (where their SQL says requests in braces,
-- analytics/questions.py), so "a request", "an escalation" and "a fallback" mean the
-- same thing everywhere. Attempts are read from one hour before `since`, so a request
-- that took longer than that to finish is counted without its earliest attempts' cost.
--
-- ttft_ms: time to the answer's first token, NULL unless the answer was streamed from
-- its backend (the deployment's `stream = true`).
-- model: the model that gave the final answer; for a failure (whose event names no
-- model), the model of the last attempt.
-- escalated: an attempt answered (status ok) and the request then moved to a later step
-- of its plan; workers do that only on the plan's escalation triggers (truncated,
-- low_confidence, validation_failed), while fallbacks follow failed or skipped attempts.
-- fell_back: the request moved to a later step after a failed attempt, or after none at
-- all (the step was skipped: breaker open, no rate-limit budget, no time left).
SELECT
    request_id,
    maxIf(ts, kind IN ('completion', 'failure'))                  AS finished_at,
    any(tenant)                                                    AS tenant,
    anyIf(route, kind IN ('completion', 'failure'))                AS route,
    anyIf(policy_version, kind IN ('completion', 'failure'))       AS policy_version,
    anyIf(model, kind IN ('completion', 'failure'))                AS final_model,
    if(final_model != '', final_model, argMaxIf(model, attempt, kind = 'attempt')) AS served_by,
    toUInt8(countIf(kind = 'failure') > 0)                         AS failed,
    anyIf(error_kind, kind = 'failure')                            AS error_kind,
    anyIf(latency_ms, kind = 'completion')                         AS latency_ms,
    anyIf(ttft_ms, kind = 'completion')                            AS ttft_ms,
    sumIf(cost_usd, kind = 'attempt')                              AS cost_usd,
    sumIf(input_tokens, kind = 'attempt')                          AS input_tokens,
    sumIf(output_tokens, kind = 'attempt')                         AS output_tokens,
    anyIf(validation, kind IN ('completion', 'failure'))           AS validation,
    toUInt8(maxIf(cache_hit, kind = 'completion'))                 AS cache_hit,
    arraySort(x -> x.1, groupArrayIf((attempt, fallback_depth, status), kind = 'attempt')) AS steps,
    arrayConcat(arrayMap(x -> toUInt16(x.2), steps), [toUInt16(maxIf(fallback_depth, kind IN ('completion', 'failure')))]) AS depths,
    arrayConcat(arrayMap(x -> toString(x.3), steps), ['final'])   AS outcomes,
    toUInt8(arrayExists((d, e, s) -> e > d AND s = 'ok', arrayPopBack(depths), arrayPopFront(depths), arrayPopBack(outcomes))) AS escalated,
    toUInt8(depths[1] > 0 OR arrayExists((d, e, s) -> e > d AND s != 'ok', arrayPopBack(depths), arrayPopFront(depths), arrayPopBack(outcomes))) AS fell_back
FROM {db}.routing_events FINAL
WHERE shadow = 0
  AND kind IN ('attempt', 'completion', 'failure')
  AND ts >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
  AND ts < {until:DateTime64(3, 'UTC')}
GROUP BY request_id
HAVING countIf(kind IN ('completion', 'failure')) > 0
   AND finished_at >= {since:DateTime64(3, 'UTC')}
