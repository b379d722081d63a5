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
-- Written as one pass over the facts (one join from facts to charges, window functions per purchase)
-- rather than a join per step: the same result, and far fewer nested evaluations of the deduplicating
-- views on engines that do not materialise them.
WITH approvals AS (
  SELECT
    transaction,
    product_id,
    occurred_at,
    event_id,
    IF(
      subscriber_code IS NULL,
      CONCAT('tx:', transaction),
      CONCAT('sub:', subscriber_code, ':', COALESCE(product_id, ''))
    ) AS purchase_key
  FROM {dataset}.payment_states
  WHERE kind = 'purchase_approved' AND transaction IS NOT NULL
),
charges AS (
  -- every approved transaction with its purchase's first transaction, product and approval
  SELECT DISTINCT
    transaction,
    FIRST_VALUE(transaction) OVER (PARTITION BY purchase_key ORDER BY occurred_at, event_id) AS purchase,
    FIRST_VALUE(product_id) OVER (PARTITION BY purchase_key ORDER BY occurred_at, event_id) AS product_id,
    FIRST_VALUE(occurred_at) OVER (PARTITION BY purchase_key ORDER BY occurred_at, event_id) AS approved_at
  FROM approvals
),
facts AS (
  SELECT transaction, kind AS what, occurred_at
  FROM {dataset}.payment_states
  WHERE
    transaction IS NOT NULL
    AND (
      kind = 'purchase_chargeback'
      OR (kind = 'purchase_refunded' AND COALESCE(status, '') <> 'partially_refunded')
    )
  UNION ALL
  SELECT transaction, activity AS what, occurred_at
  FROM {dataset}.learning_activity
  WHERE transaction IS NOT NULL
),
per_purchase AS (
  SELECT
    c.purchase,
    c.approved_at,
    f.what,
    f.occurred_at,
    MIN(IF(f.what IN ('purchase_refunded', 'purchase_chargeback'), f.occurred_at, NULL))
      OVER (PARTITION BY c.purchase) AS reversed_at
  FROM facts AS f
  JOIN charges AS c ON c.transaction = f.transaction
),
rolled AS (
  SELECT
    purchase,
    MIN(IF(what = 'purchase_refunded', occurred_at, NULL)) AS refunded_at,
    MIN(IF(what = 'purchase_chargeback', occurred_at, NULL)) AS charged_back_at,
    MIN(reversed_at) AS reversed_at,
    MIN(
      IF(
        what = 'signed_in' AND occurred_at >= approved_at AND (reversed_at IS NULL OR occurred_at < reversed_at),
        occurred_at,
        NULL
      )
    ) AS first_access_at,
    MIN(
      IF(
        what = 'course_completed'
        AND occurred_at >= approved_at
        AND (reversed_at IS NULL OR occurred_at < reversed_at),
        occurred_at,
        NULL
      )
    ) AS completed_at
  FROM per_purchase
  GROUP BY purchase
),
purchases AS (
  SELECT DISTINCT purchase, product_id, approved_at FROM charges
)
SELECT
  p.purchase AS transaction,
  p.product_id,
  CAST(DATE_TRUNC(DATE(p.approved_at), MONTH) AS DATE) AS cohort_month,
  p.approved_at,
  r.first_access_at,
  r.completed_at,
  r.refunded_at,
  r.charged_back_at,
  r.reversed_at,
  CASE
    WHEN r.completed_at IS NOT NULL THEN 'completed'
    WHEN r.first_access_at IS NOT NULL THEN 'started'
    ELSE 'never_started'
  END AS progress,
  TIMESTAMP_DIFF(r.first_access_at, p.approved_at, MILLISECOND) / 3600000 AS first_access_hours
FROM purchases AS p
LEFT JOIN rolled AS r ON r.purchase = p.purchase
