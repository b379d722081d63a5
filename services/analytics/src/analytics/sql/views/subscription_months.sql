-- One row per subscription and calendar month in which it had an approved recurring charge that was
-- not refunded or charged back; monthly_amount is the last such charge of the month (plans are monthly).
SELECT subscription_key, product_id, plan_id, currency, month, monthly_amount
FROM (
  SELECT
    COALESCE(a.subscriber_code, a.transaction) AS subscription_key,
    a.product_id,
    a.plan_id,
    a.currency,
    CAST(DATE_TRUNC(DATE(a.occurred_at), MONTH) AS DATE) AS month,
    a.price AS monthly_amount,
    ROW_NUMBER() OVER (
      PARTITION BY COALESCE(a.subscriber_code, a.transaction), CAST(DATE_TRUNC(DATE(a.occurred_at), MONTH) AS DATE)
      ORDER BY a.occurred_at DESC, a.event_id DESC
    ) AS rn
  FROM {dataset}.payment_states AS a
  LEFT JOIN (
    SELECT DISTINCT transaction, COALESCE(recurrence_number, 0) AS recurrence
    FROM {dataset}.payment_states
    WHERE kind IN ('purchase_refunded', 'purchase_chargeback') AND transaction IS NOT NULL
  ) AS r
    ON r.transaction = a.transaction AND r.recurrence = COALESCE(a.recurrence_number, 0)
  WHERE a.kind = 'purchase_approved'
    AND a.is_subscription
    AND a.price IS NOT NULL
    AND r.transaction IS NULL
)
WHERE rn = 1
