-- Per product and progress bucket (never_started / started / completed, as it stood at the reversal or
-- now): buyers, how many were refunded or charged back, and the share.
SELECT
  product_id,
  progress AS bucket,
  COUNT(*) AS buyers,
  COUNTIF(reversed_at IS NOT NULL) AS refunded,
  SAFE_DIVIDE(COUNTIF(reversed_at IS NOT NULL), COUNT(*)) AS refund_rate
FROM {dataset}.learning_purchases
GROUP BY product_id, progress
