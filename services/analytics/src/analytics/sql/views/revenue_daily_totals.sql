-- Daily revenue by currency over all products (what GET /revenue/daily answers without a product).
SELECT
  day,
  currency,
  SUM(gross) AS gross,
  SUM(completed) AS completed,
  SUM(refunds) AS refunds,
  SUM(chargebacks) AS chargebacks,
  SUM(net) AS net,
  SUM(producer_net) AS producer_net,
  SUM(purchases) AS purchases,
  SUM(completed_count) AS completed_count,
  SUM(refund_count) AS refund_count,
  SUM(chargeback_count) AS chargeback_count,
  SUM(partial_refund_count) AS partial_refund_count
FROM {dataset}.revenue_daily
GROUP BY day, currency
