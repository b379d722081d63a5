-- revenue_daily converted into each reporting currency the owner loaded rates for, with the owner's
-- rate of that day (1 for the reporting currency itself). A day and currency without a loaded rate
-- keeps rate and amounts NULL: nothing is converted with a guessed rate, and the API says what is
-- missing.
WITH reporting AS (
  SELECT DISTINCT reporting_currency FROM {dataset}.fx_rates_latest
),
rated AS (
  SELECT
    d.*,
    rc.reporting_currency,
    IF(d.currency = rc.reporting_currency, CAST(1 AS NUMERIC), x.rate) AS rate
  FROM {dataset}.revenue_daily AS d
  CROSS JOIN reporting AS rc
  LEFT JOIN {dataset}.fx_rates_latest AS x
    ON x.day = d.day AND x.currency = d.currency AND x.reporting_currency = rc.reporting_currency
)
SELECT
  day,
  product_id,
  currency,
  reporting_currency,
  rate,
  ROUND(gross * rate, 9) AS gross,
  ROUND(completed * rate, 9) AS completed,
  ROUND(refunds * rate, 9) AS refunds,
  ROUND(chargebacks * rate, 9) AS chargebacks,
  ROUND(net * rate, 9) AS net,
  ROUND(producer_net * rate, 9) AS producer_net
FROM rated
