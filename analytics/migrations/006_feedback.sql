-- Quality scores that services publish on <prefix>.feedback, one row per judgement,
-- joined to routing_events by request_id. ReplacingMergeTree on the judgement's id: a
-- redelivered copy replaces the first for queries that read FINAL (the sink also drops
-- ids it inserted recently, so that plain counts and rollups see one row too).
CREATE TABLE IF NOT EXISTS {db}.feedback
(
    feedback_id  String,
    request_id   String,
    tenant       LowCardinality(String),
    metric       LowCardinality(String),
    score        Float64,
    comment      String,
    source       LowCardinality(String),
    ts           DateTime64(3, 'UTC'),
    inserted_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, request_id, metric, feedback_id)
