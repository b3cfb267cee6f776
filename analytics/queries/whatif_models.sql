-- What each model's answers looked like over [since, until), for `turnout whatif` to
-- estimate a request a candidate policy sends elsewhere: latency at each level of
-- `levels` (the caller's wait, from the completion events) and the mean answer length.
-- Shadow copies count (they are real calls to the model, and the usual way to try one
-- before routing to it); cache hits do not (no model answered). The two level lists
-- must stay equal: quantiles() takes constants only.
SELECT
    model,
    count()                                                                       AS answers,
    [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
     0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]                      AS levels,
    quantiles(0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
              0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)(latency_ms) AS latency_ms,
    avg(output_tokens)                                                            AS mean_output_tokens
FROM {db}.routing_events FINAL
WHERE kind = 'completion'
  AND cache_hit = 0
  AND ts >= {since:DateTime64(3, 'UTC')}
  AND ts < {until:DateTime64(3, 'UTC')}
GROUP BY model
ORDER BY model
