-- Monthly recurring revenue and active subscribers by month and currency.
SELECT
  month,
  currency,
  SUM(monthly_amount) AS mrr,
  COUNT(DISTINCT subscription_key) AS active_subscribers
FROM {dataset}.subscription_months
GROUP BY month, currency
