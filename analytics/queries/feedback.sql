-- Feedback scores per route and metric, joined to the requests (finished in
-- [since, until)) by request id; a request scored twice on a metric counts twice.
SELECT
    r.route               AS route,
    f.metric              AS metric,
    count()               AS scores,
    round(avg(f.score), 4) AS mean_score
FROM {db}.feedback AS f FINAL
INNER JOIN ({requests}) AS r ON r.request_id = f.request_id
GROUP BY route, metric
ORDER BY route, metric
