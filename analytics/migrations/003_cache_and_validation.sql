-- Workers record whether an answer came from the response cache and how structured output fared.
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS cache_hit UInt8 DEFAULT 0;
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS validation LowCardinality(String) DEFAULT ''
