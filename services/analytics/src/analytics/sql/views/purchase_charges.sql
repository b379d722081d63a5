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
WITH states AS (
  SELECT *, COALESCE(recurrence_number, 0) AS recurrence
  FROM {dataset}.payment_states
  WHERE transaction IS NOT NULL
),
approved AS (
  SELECT * EXCEPT (rn) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY transaction, recurrence ORDER BY occurred_at, event_id) AS rn
    FROM states
    WHERE kind = 'purchase_approved'
  )
  WHERE rn = 1
),
completed AS (
  SELECT * EXCEPT (rn) FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY transaction, recurrence ORDER BY occurred_at, event_id) AS rn
    FROM states
    WHERE kind = 'purchase_complete'
  )
  WHERE rn = 1
),
reversed AS (
  SELECT * EXCEPT (rn) FROM (
    SELECT
      *,
      ROW_NUMBER() OVER (
        PARTITION BY transaction, recurrence
        ORDER BY
          IF(kind = 'purchase_refunded' AND status = 'partially_refunded', 0, 1) DESC,
          occurred_at DESC,
          event_id DESC
      ) AS rn
    FROM states
    WHERE kind IN ('purchase_refunded', 'purchase_chargeback')
  )
  WHERE rn = 1
),
charges AS (
  SELECT transaction, recurrence FROM approved
  UNION DISTINCT
  SELECT transaction, recurrence FROM completed
  UNION DISTINCT
  SELECT transaction, recurrence FROM reversed
)
SELECT
  k.transaction,
  k.recurrence AS recurrence_number,
  COALESCE(a.product_id, r.product_id, c.product_id) AS product_id,
  COALESCE(a.plan_id, r.plan_id, c.plan_id) AS plan_id,
  COALESCE(a.subscriber_code, r.subscriber_code, c.subscriber_code) AS subscriber_code,
  COALESCE(a.subscriber_code, r.subscriber_code, c.subscriber_code) IS NOT NULL AS is_subscription,
  a.event_id AS approved_event_id,
  a.occurred_at AS approved_at,
  a.currency AS currency,
  a.price AS approved_amount,
  a.full_price AS approved_full_price,
  a.producer_currency AS producer_currency,
  a.producer_net AS approved_producer_net,
  c.occurred_at AS completed_at,
  IF(a.event_id IS NULL, c.currency, a.currency) AS completed_currency,
  IF(a.event_id IS NULL, c.price, a.price) AS completed_amount,
  CASE
    WHEN r.event_id IS NULL THEN NULL
    WHEN r.kind = 'purchase_chargeback' THEN 'chargeback'
    WHEN r.status = 'partially_refunded' THEN 'partial_refund'
    ELSE 'refund'
  END AS reversal,
  r.occurred_at AS reversed_at,
  IF(a.event_id IS NULL, r.currency, a.currency) AS reversal_currency,
  IF(r.status = 'partially_refunded' AND r.kind = 'purchase_refunded', NULL, IF(a.event_id IS NULL, r.price, a.price))
    AS reversal_amount,
  IF(a.event_id IS NULL, r.producer_currency, a.producer_currency) AS reversal_producer_currency,
  IF(
    r.status = 'partially_refunded' AND r.kind = 'purchase_refunded',
    NULL,
    IF(a.event_id IS NULL, r.producer_net, a.producer_net)
  ) AS reversal_producer_net
FROM charges AS k
LEFT JOIN approved AS a ON a.transaction = k.transaction AND a.recurrence = k.recurrence
LEFT JOIN completed AS c ON c.transaction = k.transaction AND c.recurrence = k.recurrence
LEFT JOIN reversed AS r ON r.transaction = k.transaction AND r.recurrence = k.recurrence
