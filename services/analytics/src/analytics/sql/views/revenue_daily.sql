-- Daily revenue by product and currency (UTC days). gross = approved charges (first purchases and
-- renewals); refunds and chargebacks are counted on the day they happen; net = gross - refunds - chargebacks.
SELECT
  DATE(occurred_at) AS day,
  product_id,
  currency,
  SUM(IF(kind = 'purchase_approved', price, 0)) AS gross,
  SUM(IF(kind = 'purchase_refunded', price, 0)) AS refunds,
  SUM(IF(kind = 'purchase_chargeback', price, 0)) AS chargebacks,
  SUM(IF(kind = 'purchase_approved', price, 0 - price)) AS net,
  SUM(IF(kind = 'purchase_approved', COALESCE(producer_net, 0), 0 - COALESCE(producer_net, 0))) AS producer_net,
  COUNTIF(kind = 'purchase_approved') AS purchases,
  COUNTIF(kind = 'purchase_refunded') AS refund_count,
  COUNTIF(kind = 'purchase_chargeback') AS chargeback_count
FROM {dataset}.payment_states
WHERE kind IN ('purchase_approved', 'purchase_refunded', 'purchase_chargeback')
  AND currency IS NOT NULL
  AND price IS NOT NULL
GROUP BY day, product_id, currency
