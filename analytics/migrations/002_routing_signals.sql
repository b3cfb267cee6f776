-- Signals the routing engine records with every event, and shadow copies kept apart.
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS shadow UInt8 DEFAULT 0;
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS language LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS complexity Float32 DEFAULT 0;
ALTER TABLE {db}.routing_events ADD COLUMN IF NOT EXISTS sensitive_kinds Array(LowCardinality(String)) DEFAULT []
