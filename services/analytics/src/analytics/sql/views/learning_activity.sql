-- One row per learning activity (a TalentLMS timeline entry) and attributed purchase. The raw table may
-- hold an activity more than once: redeliveries (same event id, BigQuery appends) and re-reads or
-- replays of the timeline (same activity_id under a new event id). This keeps the first reading of each
-- (activity, transaction): a later reading that attributes the activity to another purchase adds it.
SELECT * EXCEPT (rn)
FROM (
  SELECT
    l.*,
    ROW_NUMBER() OVER (
      PARTITION BY l.activity_id, COALESCE(l.transaction, '')
      ORDER BY l.observed_at, l.event_id, l.purchase_index
    ) AS rn
  FROM {dataset}.learning AS l
)
WHERE rn = 1
