-- Requests refused before routing, by reason.
SELECT error_kind, count() AS rejected
FROM {db}.routing_events FINAL
WHERE kind = 'rejected'
GROUP BY error_kind
ORDER BY rejected DESC
