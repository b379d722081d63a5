-- Monthly recurring revenue, active subscribers (every subscription with a paid charge in the month,
-- including the month's new ones) and new subscribers (first paid month) by month, product and currency.
-- A subscription's first month comes from a window rather than a join back to a grouped set: the same
-- rows, without a join the BigQuery emulator's SQLite evaluates in quadratic time.
WITH months AS (
  SELECT *, MIN(month) OVER (PARTITION BY subscription_key) AS first_month
  FROM {dataset}.subscription_months
)
SELECT
  month,
  product_id,
  currency,
  SUM(monthly_amount) AS mrr,
  COUNT(DISTINCT subscription_key) AS active_subscribers,
  COUNT(DISTINCT IF(first_month = month, subscription_key, NULL)) AS new_subscribers
FROM months
GROUP BY month, product_id, currency
