-- Spend per tenant, route and model over [since, until) from the rollups, for the
-- dashboard's savings panel (fast however large the raw events grow): every paid backend
-- call is an attempt, shadow copies included (paid for too, and shown apart). The same
-- figures as spend.sql summed over its days; spend.sql reads the raw events (the CLI).
SELECT
    tenant,
    route,
    model,
    sum(events)                                 AS calls,
    sum(input_tokens)                           AS input_tokens,
    sum(output_tokens)                          AS output_tokens,
    round(sum(cost_usd), 6)                     AS cost_usd,
    round(sumIf(r.cost_usd, r.shadow = 1), 6)   AS shadow_cost_usd
FROM {db}.{rollup:Identifier} AS r
WHERE {rollup_time:Identifier} >= {since:DateTime64(3, 'UTC')}
  AND {rollup_time:Identifier} < {until:DateTime64(3, 'UTC')}
  AND kind = 'attempt'
GROUP BY tenant, route, model
ORDER BY tenant, route, model
