-- Requests per route whose final outcome (completion or failure, shadows left out) falls
-- in [since, until), from the rollups, so counting a month costs milliseconds: the whole
-- hours inside the window from routing_rollup_1h, the minutes at its edges from
-- routing_rollup_1m. The minute that holds `since` counts whole, so this is an upper
-- bound by at most a minute's requests: analytics/sampling.py sets each route's sampling
-- rate from it.
WITH
    toStartOfHour({since:DateTime64(3, 'UTC')})                                  AS since_hour,
    if(since_hour = {since:DateTime64(3, 'UTC')}, since_hour, since_hour + INTERVAL 1 HOUR) AS whole_from,
    toStartOfHour({until:DateTime64(3, 'UTC')})                                  AS whole_until
SELECT route, sum(events) AS requests
FROM (
    SELECT route, events
    FROM {db}.routing_rollup_1h
    WHERE hour >= whole_from AND hour < whole_until
      AND kind IN ('completion', 'failure') AND shadow = 0
    UNION ALL
    SELECT route, events
    FROM {db}.routing_rollup_1m
    WHERE minute > {since:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE
      AND minute < {until:DateTime64(3, 'UTC')}
      AND (minute < whole_from OR minute >= whole_until)
      AND kind IN ('completion', 'failure') AND shadow = 0
)
GROUP BY route
ORDER BY route
