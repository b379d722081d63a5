-- Monthly recurring revenue, active subscribers (every subscription with a paid charge in the month,
-- including the month's new ones) and new subscribers (first paid month) by month, product and currency.
WITH firsts AS (
  SELECT subscription_key, MIN(month) AS first_month
  FROM {dataset}.subscription_months
  GROUP BY subscription_key
)
SELECT
  s.month,
  s.product_id,
  s.currency,
  SUM(s.monthly_amount) AS mrr,
  COUNT(DISTINCT s.subscription_key) AS active_subscribers,
  COUNT(DISTINCT IF(f.first_month = s.month, s.subscription_key, NULL)) AS new_subscribers
FROM {dataset}.subscription_months AS s
JOIN firsts AS f ON f.subscription_key = s.subscription_key
GROUP BY s.month, s.product_id, s.currency
