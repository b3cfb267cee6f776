-- The dashboard's quality panel from the rollups (fast however large the raw events
-- grow): per route over [since, until), the same columns as quality.sql, counted on the
-- final outcomes callers saw (completion or failure, shadows left out).
--   validated, pass_rate       requests that asked for structured output, and the share
--                              that passed (at once, after a repair or after a re-ask)
--   escalation_rate            requests answered on their plan's escalation step
--   fallback_rate              requests answered further along their plan, not by
--                              escalation (a failed or skipped step before)
-- quality.sql reads the raw events per request instead (the CLI): it also tells a
-- request that fell back and then escalated, which here counts as escalated only.
SELECT
    route,
    sum(events)                                                   AS requests,
    round(sumIf(events, kind = 'failure') / nullIf(requests, 0), 4) AS error_rate,
    sum(validated)                                                AS validated,
    round(sum(valid) / nullIf(validated, 0), 4)                   AS pass_rate,
    round((sum(valid) - sum(repaired) - sum(reasked)) / nullIf(validated, 0), 4) AS first_try_pass_rate,
    round(sum(escalations) / nullIf(requests, 0), 4)              AS escalation_rate,
    round(sum(fell_back) / nullIf(requests, 0), 4)                AS fallback_rate
FROM {db}.{rollup:Identifier}
WHERE {rollup_time:Identifier} >= {since:DateTime64(3, 'UTC')}
  AND {rollup_time:Identifier} < {until:DateTime64(3, 'UTC')}
  AND kind IN ('completion', 'failure')
  AND shadow = 0
GROUP BY route
ORDER BY route
