-- One row per subscription and calendar month in which it had an approved charge that was not refunded
-- in full or charged back (a partial refund keeps the subscription); monthly_amount is the last such
-- charge of the month (plans are monthly). A subscriber code is per buyer and product.
SELECT subscription_key, product_id, plan_id, currency, month, monthly_amount
FROM (
  SELECT
    COALESCE(subscriber_code, transaction) AS subscription_key,
    product_id,
    plan_id,
    currency,
    CAST(DATE_TRUNC(DATE(approved_at), MONTH) AS DATE) AS month,
    approved_amount AS monthly_amount,
    ROW_NUMBER() OVER (
      PARTITION BY COALESCE(subscriber_code, transaction), CAST(DATE_TRUNC(DATE(approved_at), MONTH) AS DATE)
      ORDER BY approved_at DESC, approved_event_id DESC
    ) AS rn
  FROM {dataset}.purchase_charges
  WHERE approved_at IS NOT NULL
    AND is_subscription
    AND approved_amount IS NOT NULL
    AND currency IS NOT NULL
    AND (reversal IS NULL OR reversal = 'partial_refund')
)
WHERE rn = 1
