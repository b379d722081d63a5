-- One row per purchase state change. Rows are already unique by event id; this also folds the same
-- change announced twice under different Hotmart ids (same transaction, kind and recurrence).
SELECT * EXCEPT (rn)
FROM (
  SELECT
    p.*,
    ROW_NUMBER() OVER (
      PARTITION BY COALESCE(p.transaction, p.event_id), p.kind, COALESCE(p.recurrence_number, 0)
      ORDER BY p.occurred_at, p.event_id
    ) AS rn
  FROM {dataset}.payments AS p
)
WHERE rn = 1
