-- One row per purchase state change. The raw table may hold an event more than once (BigQuery appends;
-- redeliveries land twice); this keeps the first row of each change and also folds the same change
-- announced twice under different Hotmart ids (same transaction, kind, status and recurrence).
SELECT * EXCEPT (rn)
FROM (
  SELECT
    p.*,
    ROW_NUMBER() OVER (
      PARTITION BY
        COALESCE(p.transaction, p.event_id), p.kind, COALESCE(p.status, ''), COALESCE(p.recurrence_number, 0)
      ORDER BY p.occurred_at, p.event_id
    ) AS rn
  FROM {dataset}.payments AS p
)
WHERE rn = 1
