-- One row per charge (a purchase's transaction and recurrence number) in its final state:
--   * the approval that counts as gross revenue (price, in its currency; producer net in the
--     PRODUCER commission's own currency);
--   * when the warranty ended (PURCHASE_COMPLETE): the same money, now out of the refund window;
--   * at most ONE reversal. A charge refunded and then charged back (or the other way round) is
--     reversed once: the later reversal wins and decides the category, except that a partial refund
--     never replaces a full refund or a chargeback. A full refund or chargeback reverses what the
--     approval counted (its price and producer net), whatever the reversal body carries; only without
--     a known approval are the reversal body's own amounts used.
--   * Partial refunds (status partially_refunded): Hotmart's webhook carries no refunded amount, so
--     reversal_amount is NULL (counted, never guessed).
-- A subscription charge is one with a subscriber code (the webhook has no reliable is_subscription).
-- Written as one pass (rank each state within its charge and role, keep at most three rows per charge,
-- fold them with GROUP BY) rather than three ranked sets joined back together: the same rows, without
-- joins, which engines without hash joins (the BigQuery emulator's SQLite) evaluate in quadratic time.
WITH states AS (
  SELECT
    *,
    COALESCE(recurrence_number, 0) AS recurrence,
    CASE
      WHEN kind = 'purchase_approved' THEN 'approved'
      WHEN kind = 'purchase_complete' THEN 'completed'
      ELSE 'reversed'
    END AS role
  FROM {dataset}.payment_states
  WHERE transaction IS NOT NULL
    AND kind IN ('purchase_approved', 'purchase_complete', 'purchase_refunded', 'purchase_chargeback')
),
ranked AS (
  SELECT
    *,
    -- approval and completion: the first of the charge
    ROW_NUMBER() OVER (PARTITION BY transaction, recurrence, role ORDER BY occurred_at, event_id) AS first_rn,
    -- reversal: the last, a partial refund only when nothing else reversed the charge
    ROW_NUMBER() OVER (
      PARTITION BY transaction, recurrence, role
      ORDER BY
        IF(kind = 'purchase_refunded' AND status = 'partially_refunded', 0, 1) DESC,
        occurred_at DESC,
        event_id DESC
    ) AS last_rn
  FROM states
),
picked AS (
  SELECT * FROM ranked
  WHERE (role IN ('approved', 'completed') AND first_rn = 1) OR (role = 'reversed' AND last_rn = 1)
),
charges AS (
  -- one row per charge; a_ = its approval, c_ = its completion, r_ = its winning reversal
  SELECT
    transaction,
    recurrence,
    COUNTIF(role = 'approved') > 0 AS approved,
    COUNTIF(role = 'reversed') > 0 AS reversed,
    MAX(IF(role = 'approved', product_id, NULL)) AS a_product_id,
    MAX(IF(role = 'completed', product_id, NULL)) AS c_product_id,
    MAX(IF(role = 'reversed', product_id, NULL)) AS r_product_id,
    MAX(IF(role = 'approved', plan_id, NULL)) AS a_plan_id,
    MAX(IF(role = 'completed', plan_id, NULL)) AS c_plan_id,
    MAX(IF(role = 'reversed', plan_id, NULL)) AS r_plan_id,
    MAX(IF(role = 'approved', subscriber_code, NULL)) AS a_subscriber_code,
    MAX(IF(role = 'completed', subscriber_code, NULL)) AS c_subscriber_code,
    MAX(IF(role = 'reversed', subscriber_code, NULL)) AS r_subscriber_code,
    MAX(IF(role = 'approved', event_id, NULL)) AS a_event_id,
    MAX(IF(role = 'approved', occurred_at, NULL)) AS a_occurred_at,
    MAX(IF(role = 'approved', currency, NULL)) AS a_currency,
    MAX(IF(role = 'approved', price, NULL)) AS a_price,
    MAX(IF(role = 'approved', full_price, NULL)) AS a_full_price,
    MAX(IF(role = 'approved', producer_currency, NULL)) AS a_producer_currency,
    MAX(IF(role = 'approved', producer_net, NULL)) AS a_producer_net,
    MAX(IF(role = 'completed', occurred_at, NULL)) AS c_occurred_at,
    MAX(IF(role = 'completed', currency, NULL)) AS c_currency,
    MAX(IF(role = 'completed', price, NULL)) AS c_price,
    MAX(IF(role = 'reversed', kind, NULL)) AS r_kind,
    MAX(IF(role = 'reversed', status, NULL)) AS r_status,
    MAX(IF(role = 'reversed', occurred_at, NULL)) AS r_occurred_at,
    MAX(IF(role = 'reversed', currency, NULL)) AS r_currency,
    MAX(IF(role = 'reversed', price, NULL)) AS r_price,
    MAX(IF(role = 'reversed', producer_currency, NULL)) AS r_producer_currency,
    MAX(IF(role = 'reversed', producer_net, NULL)) AS r_producer_net
  FROM picked
  GROUP BY transaction, recurrence
)
SELECT
  transaction,
  recurrence AS recurrence_number,
  COALESCE(a_product_id, r_product_id, c_product_id) AS product_id,
  COALESCE(a_plan_id, r_plan_id, c_plan_id) AS plan_id,
  COALESCE(a_subscriber_code, r_subscriber_code, c_subscriber_code) AS subscriber_code,
  COALESCE(a_subscriber_code, r_subscriber_code, c_subscriber_code) IS NOT NULL AS is_subscription,
  a_event_id AS approved_event_id,
  a_occurred_at AS approved_at,
  a_currency AS currency,
  a_price AS approved_amount,
  a_full_price AS approved_full_price,
  a_producer_currency AS producer_currency,
  a_producer_net AS approved_producer_net,
  c_occurred_at AS completed_at,
  IF(approved, a_currency, c_currency) AS completed_currency,
  IF(approved, a_price, c_price) AS completed_amount,
  CASE
    WHEN NOT reversed THEN NULL
    WHEN r_kind = 'purchase_chargeback' THEN 'chargeback'
    WHEN r_status = 'partially_refunded' THEN 'partial_refund'
    ELSE 'refund'
  END AS reversal,
  r_occurred_at AS reversed_at,
  IF(approved, a_currency, r_currency) AS reversal_currency,
  IF(r_status = 'partially_refunded' AND r_kind = 'purchase_refunded', NULL, IF(approved, a_price, r_price))
    AS reversal_amount,
  IF(approved, a_producer_currency, r_producer_currency) AS reversal_producer_currency,
  IF(
    r_status = 'partially_refunded' AND r_kind = 'purchase_refunded',
    NULL,
    IF(approved, a_producer_net, r_producer_net)
  ) AS reversal_producer_net
FROM charges
