-- One row per purchase with what its buyer did on TalentLMS afterwards.
--   * A purchase is a one-off transaction, or a whole subscription (subscriber code and product): its
--     renewals are charges of the same purchase, not new buyers. "transaction" is the purchase's first
--     approved transaction; activity attributed to any of its transactions counts for it.
--   * approved_at: the first approval; cohort_month is its month; product_id its product.
--   * refunded_at / charged_back_at: the first full refund / chargeback of any of its charges (a partial
--     refund keeps the access and is not one); reversed_at is the earlier of the two.
--   * first_access_at: the first TalentLMS sign-in attributed to the purchase at or after the approval
--     and before the reversal. TalentLMS's timeline has no per-course "first opened" entry, so access
--     is portal-level.
--   * completed_at: the first course completion attributed to the purchase in the same window.
--   * progress: 'completed' (a completion), 'started' (signed in, not completed) or 'never_started',
--     as it stood when the purchase was reversed, or now when it was not.
WITH approvals AS (
  SELECT
    transaction,
    product_id,
    occurred_at,
    event_id,
    IF(subscriber_code IS NULL, CONCAT('tx:', transaction), CONCAT('sub:', subscriber_code, ':', COALESCE(product_id, '')))
      AS purchase_key
  FROM {dataset}.payment_states
  WHERE kind = 'purchase_approved' AND transaction IS NOT NULL
),
firsts AS (
  SELECT * EXCEPT (rn) FROM (
    SELECT
      purchase_key,
      transaction,
      product_id,
      occurred_at AS approved_at,
      ROW_NUMBER() OVER (PARTITION BY purchase_key ORDER BY occurred_at, event_id) AS rn
    FROM approvals
  )
  WHERE rn = 1
),
charges AS (
  SELECT DISTINCT a.transaction, f.transaction AS purchase
  FROM approvals AS a
  JOIN firsts AS f ON f.purchase_key = a.purchase_key
),
reversals AS (
  SELECT
    c.purchase,
    MIN(IF(s.kind = 'purchase_refunded', s.occurred_at, NULL)) AS refunded_at,
    MIN(IF(s.kind = 'purchase_chargeback', s.occurred_at, NULL)) AS charged_back_at,
    MIN(s.occurred_at) AS reversed_at
  FROM {dataset}.payment_states AS s
  JOIN charges AS c ON c.transaction = s.transaction
  WHERE
    s.kind = 'purchase_chargeback'
    OR (s.kind = 'purchase_refunded' AND COALESCE(s.status, '') <> 'partially_refunded')
  GROUP BY c.purchase
),
purchases AS (
  SELECT f.transaction, f.product_id, f.approved_at, r.refunded_at, r.charged_back_at, r.reversed_at
  FROM firsts AS f
  LEFT JOIN reversals AS r ON r.purchase = f.transaction
),
progress AS (
  SELECT
    p.transaction,
    MIN(IF(x.activity = 'signed_in', x.occurred_at, NULL)) AS first_access_at,
    MIN(IF(x.activity = 'course_completed', x.occurred_at, NULL)) AS completed_at
  FROM purchases AS p
  JOIN charges AS c ON c.purchase = p.transaction
  JOIN {dataset}.learning_activity AS x ON x.transaction = c.transaction
  WHERE x.occurred_at >= p.approved_at AND (p.reversed_at IS NULL OR x.occurred_at < p.reversed_at)
  GROUP BY p.transaction
)
SELECT
  p.transaction,
  p.product_id,
  CAST(DATE_TRUNC(DATE(p.approved_at), MONTH) AS DATE) AS cohort_month,
  p.approved_at,
  g.first_access_at,
  g.completed_at,
  p.refunded_at,
  p.charged_back_at,
  p.reversed_at,
  CASE
    WHEN g.completed_at IS NOT NULL THEN 'completed'
    WHEN g.first_access_at IS NOT NULL THEN 'started'
    ELSE 'never_started'
  END AS progress,
  TIMESTAMP_DIFF(g.first_access_at, p.approved_at, MILLISECOND) / 3600000 AS first_access_hours
FROM purchases AS p
LEFT JOIN progress AS g ON g.transaction = p.transaction
