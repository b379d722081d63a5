-- Subscriber churn by month and product: of the subscriptions active in the previous month, the share
-- not active this month. Months run up to the last month with any active subscription; the current
-- month is provisional until it ends (a renewal later in the month is not there yet).
WITH active AS (
  SELECT DISTINCT subscription_key, product_id, month FROM {dataset}.subscription_months
),
months AS (
  SELECT DISTINCT CAST(DATE_ADD(month, INTERVAL 1 MONTH) AS DATE) AS month
  FROM active
  WHERE month < (SELECT MAX(month) FROM active)
)
SELECT
  m.month,
  prev.product_id,
  COUNT(DISTINCT prev.subscription_key) AS subscribers_at_start,
  COUNT(DISTINCT IF(cur.subscription_key IS NULL, prev.subscription_key, NULL)) AS churned,
  SAFE_DIVIDE(
    COUNT(DISTINCT IF(cur.subscription_key IS NULL, prev.subscription_key, NULL)),
    COUNT(DISTINCT prev.subscription_key)
  ) AS churn_rate
FROM months AS m
JOIN active AS prev
  ON prev.month = CAST(DATE_SUB(m.month, INTERVAL 1 MONTH) AS DATE)
LEFT JOIN active AS cur
  ON cur.subscription_key = prev.subscription_key AND cur.month = m.month
GROUP BY m.month, prev.product_id
