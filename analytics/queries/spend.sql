-- Spend by day, tenant, route and model in [since, until): every paid backend call is an
-- attempt event, shadow copies included (they are paid for too, and shown apart).
SELECT
    toDate(ts)                                   AS day,
    tenant,
    route,
    model,
    count()                                      AS calls,
    sum(input_tokens)                            AS input_tokens,
    sum(output_tokens)                           AS output_tokens,
    round(sum(cost_usd), 6)                      AS cost_usd,
    round(sumIf(e.cost_usd, e.shadow = 1), 6)    AS shadow_cost_usd
FROM {db}.routing_events AS e FINAL
WHERE kind = 'attempt'
  AND ts >= {since:DateTime64(3, 'UTC')}
  AND ts < {until:DateTime64(3, 'UTC')}
GROUP BY day, tenant, route, model
ORDER BY day, tenant, route, model
