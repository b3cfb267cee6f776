-- Feedback scores per route and metric, joined to the requests (finished in
-- [since, until)) by request id; a request scored twice on a metric counts twice.
-- A request's route is on its final event (completion or failure, shadows left out);
-- only the requests that have feedback are looked up, so the raw events are filtered
-- by request id before any grouping (requests.sql would group every request first).
SELECT
    r.route               AS route,
    f.metric              AS metric,
    count()               AS scores,
    round(avg(f.score), 4) AS mean_score
FROM {db}.feedback AS f FINAL
INNER JOIN (
    SELECT request_id, any(route) AS route
    FROM {db}.routing_events
    WHERE kind IN ('completion', 'failure')
      AND shadow = 0
      AND ts >= {since:DateTime64(3, 'UTC')}
      AND ts < {until:DateTime64(3, 'UTC')}
      AND request_id IN (SELECT request_id FROM {db}.feedback)
    GROUP BY request_id
) AS r ON r.request_id = f.request_id
GROUP BY route, metric
ORDER BY route, metric
