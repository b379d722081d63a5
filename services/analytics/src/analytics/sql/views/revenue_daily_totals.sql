-- Daily revenue by currency over all products (what GET /revenue/daily answers).
SELECT
  day,
  currency,
  SUM(gross) AS gross,
  SUM(refunds) AS refunds,
  SUM(chargebacks) AS chargebacks,
  SUM(net) AS net,
  SUM(purchases) AS purchases
FROM {dataset}.revenue_daily
GROUP BY day, currency
