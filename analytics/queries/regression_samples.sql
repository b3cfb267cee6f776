-- Per-request samples for regression tests over [since, until): the group a request
-- belongs to (route, the model that served it, the policy version that routed it) and
-- what it measured. latency_ms counts for completed requests only (failed = 0).
SELECT route, served_by AS model, policy_version, failed, latency_ms, cost_usd, validation
FROM ({requests})
