-- The stored prompts of [since, until) (of one tenant; every tenant's when tenant is ''),
-- each with what actually happened to it, for `turnout whatif` (analytics/whatif.py).
-- Shadow copies are left out: they answer nobody and the candidate is judged on what
-- callers got.
--
-- outcome: served (a completion), failed (a failure: every step of the plan gave up),
-- refused (the router's rejected event), or '' when no event is stored yet (in flight,
-- or its events older than an hour before the window).
-- routed_to: the primary the policy in force chose (the decision event), compared with
-- the candidate's primary to count the requests whose model changes.
-- cost_usd: every attempt the request paid for, fallbacks and retries included.
-- input_tokens, output_tokens, latency_ms: the answer the caller got (completion).
SELECT
    p.request_id            AS request_id,
    p.tenant                AS tenant,
    p.ts                    AS ts,
    p.policy_version        AS policy_version,
    p.messages              AS messages,
    p.input                 AS input,
    p.model                 AS model,
    p.metadata              AS metadata,
    p.signals               AS signals,
    o.outcome               AS outcome,
    o.routed_to             AS routed_to,
    o.error_kind            AS error_kind,
    o.cost_usd              AS cost_usd,
    o.latency_ms            AS latency_ms,
    o.input_tokens          AS input_tokens,
    o.output_tokens         AS output_tokens
FROM
(
    SELECT request_id, tenant, ts, policy_version, messages, input, model, metadata, signals
    FROM {db}.prompts FINAL
    WHERE ts >= {since:DateTime64(3, 'UTC')}
      AND ts < {until:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
) AS p
LEFT JOIN
(
    SELECT
        request_id,
        multiIf(countIf(kind = 'completion') > 0, 'served',
                countIf(kind = 'failure') > 0, 'failed',
                countIf(kind = 'rejected') > 0, 'refused', '')  AS outcome,
        anyIf(model, kind = 'decision')                          AS routed_to,
        anyIf(error_kind, kind IN ('failure', 'rejected'))       AS error_kind,
        sumIf(cost_usd, kind = 'attempt')                        AS cost_usd,
        anyIf(latency_ms, kind = 'completion')                   AS latency_ms,
        anyIf(input_tokens, kind = 'completion')                 AS input_tokens,
        anyIf(output_tokens, kind = 'completion')                AS output_tokens
    FROM {db}.routing_events FINAL
    WHERE shadow = 0
      AND ts >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 HOUR
      AND request_id IN (
          SELECT request_id FROM {db}.prompts
          WHERE ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}
            AND ({tenant:String} = '' OR tenant = {tenant:String})
      )
    GROUP BY request_id
) AS o ON o.request_id = p.request_id
ORDER BY ts, request_id
