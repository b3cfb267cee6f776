-- Where each backend call ran and how soon its answer started.
-- region: the fleet region of the deployment an attempt, completion or failure event is
-- about (e.g. eu-west-1): data-residency and per-region latency questions read it.
-- Decision and rejected events, written by the router before any deployment is called,
-- and events written before this column existed, hold ''.
-- ttft_ms: time to first token, in milliseconds, from sending a streamed backend call to
-- its first content token (attempt and completion events). NULL when the call was not
-- streamed (a deployment with stream = false, every embedding call, a cache hit), when it
-- failed before its first token, and on events written before this column existed: a
-- NULL is "not measured", never "instant". Float32 like confidence: the workers measure
-- fractions of a millisecond, and a streamed completion's ttft_ms is at most its latency_ms.
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS region LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS ttft_ms Nullable(Float32)
