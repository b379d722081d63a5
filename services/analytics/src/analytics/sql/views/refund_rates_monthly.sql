-- Refund and chargeback rates by month, product and currency: reversals that happened in the month over
-- the charges approved in the month, by count and by amount (partial refunds by count only).
SELECT
  CAST(DATE_TRUNC(day, MONTH) AS DATE) AS month,
  product_id,
  currency,
  SUM(purchases) AS purchases,
  SUM(refund_count) AS refund_count,
  SUM(chargeback_count) AS chargeback_count,
  SUM(partial_refund_count) AS partial_refund_count,
  SAFE_DIVIDE(SUM(refund_count), SUM(purchases)) AS refund_rate,
  SAFE_DIVIDE(SUM(chargeback_count), SUM(purchases)) AS chargeback_rate,
  SAFE_DIVIDE(SUM(refunds), SUM(gross)) AS refund_amount_rate,
  SAFE_DIVIDE(SUM(chargebacks), SUM(gross)) AS chargeback_amount_rate
FROM {dataset}.revenue_daily
GROUP BY month, product_id, currency
