-- Workers record the answer's confidence (geometric mean of its token probabilities) when
-- the plan escalates on low_confidence and the provider returned logprobs: analysts see
-- its distribution per model and route, and tune the routes' min_confidence with it.
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS confidence Nullable(Float32)
