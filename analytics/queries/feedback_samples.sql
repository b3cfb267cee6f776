-- Every feedback score on a request finished in [since, until), with the request's route,
-- model and policy version: the samples behind feedback regressions.
SELECT r.route AS route, r.served_by AS model, r.policy_version AS policy_version, f.metric AS metric, f.score AS score
FROM {db}.feedback AS f FINAL
INNER JOIN ({requests}) AS r ON r.request_id = f.request_id
