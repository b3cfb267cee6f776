-- Quality per route over [since, until), per request (definitions in requests.sql):
-- validation pass rate among requests that asked for structured output (passed at once,
-- after a repair or after a re-ask; 'failed' is the rest), escalation and fallback rates.
SELECT
    route,
    count()                                                     AS requests,
    round(avg(failed), 4)                                       AS error_rate,
    countIf(validation != '')                                   AS validated,
    round(countIf(validation IN ('passed', 'repaired', 'reasked')) / nullIf(validated, 0), 4) AS pass_rate,
    round(countIf(validation = 'passed') / nullIf(validated, 0), 4) AS first_try_pass_rate,
    round(avg(escalated), 4)                                    AS escalation_rate,
    round(avg(fell_back), 4)                                    AS fallback_rate
FROM ({requests})
GROUP BY route
ORDER BY route
