-- Daily revenue by product and currency (UTC days), from purchase_charges so that every charge is
-- counted once per category. Amounts in one row are all in that row's currency; currencies are never
-- added together. gross = approved charges (first purchases and renewals) on their approval day;
-- completed = charges whose warranty ended that day (the same money, now out of the refund window,
-- not added to net); refunds and chargebacks on the day of the reversal that won;
-- net = gross - refunds - chargebacks; producer_net = PRODUCER commissions of approvals minus those of
-- reversals, in the commission's own currency (so a row may carry producer_net only).
-- partial_refund_count: partial refunds, whose amount Hotmart does not send (not in refunds or net).
WITH charges AS (
  SELECT * FROM {dataset}.purchase_charges
),
movements AS (
  SELECT DATE(approved_at) AS day, product_id, currency, 'approved' AS measure, approved_amount AS amount
  FROM charges
  WHERE approved_at IS NOT NULL AND currency IS NOT NULL AND approved_amount IS NOT NULL
  UNION ALL
  SELECT DATE(completed_at), product_id, completed_currency, 'completed', completed_amount
  FROM charges
  WHERE completed_at IS NOT NULL AND completed_currency IS NOT NULL AND completed_amount IS NOT NULL
  UNION ALL
  SELECT DATE(reversed_at), product_id, reversal_currency, reversal, reversal_amount
  FROM charges
  WHERE reversed_at IS NOT NULL AND reversal_currency IS NOT NULL
    AND (reversal_amount IS NOT NULL OR reversal = 'partial_refund')
  UNION ALL
  SELECT DATE(approved_at), product_id, producer_currency, 'producer_net', approved_producer_net
  FROM charges
  WHERE approved_at IS NOT NULL AND producer_currency IS NOT NULL AND approved_producer_net IS NOT NULL
  UNION ALL
  SELECT DATE(reversed_at), product_id, reversal_producer_currency, 'producer_net', 0 - reversal_producer_net
  FROM charges
  WHERE reversed_at IS NOT NULL AND reversal_producer_currency IS NOT NULL AND reversal_producer_net IS NOT NULL
)
SELECT
  day,
  product_id,
  currency,
  SUM(IF(measure = 'approved', amount, 0)) AS gross,
  SUM(IF(measure = 'completed', amount, 0)) AS completed,
  SUM(IF(measure = 'refund', amount, 0)) AS refunds,
  SUM(IF(measure = 'chargeback', amount, 0)) AS chargebacks,
  SUM(IF(measure = 'approved', amount, IF(measure IN ('refund', 'chargeback'), 0 - amount, 0))) AS net,
  SUM(IF(measure = 'producer_net', amount, 0)) AS producer_net,
  COUNTIF(measure = 'approved') AS purchases,
  COUNTIF(measure = 'completed') AS completed_count,
  COUNTIF(measure = 'refund') AS refund_count,
  COUNTIF(measure = 'chargeback') AS chargeback_count,
  COUNTIF(measure = 'partial_refund') AS partial_refund_count
FROM movements
GROUP BY day, product_id, currency
