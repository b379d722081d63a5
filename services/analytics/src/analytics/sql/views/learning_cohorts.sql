-- Per product and cohort month (the month of approval): buyers, how many started (signed in or
-- completed after buying and before any reversal), how many completed, and the median hours from
-- approval to first sign-in over the buyers who signed in (PERCENTILE_CONT: exact, interpolated).
WITH purchases AS (
  SELECT
    *,
    PERCENTILE_CONT(first_access_hours, 0.5) OVER (PARTITION BY product_id, cohort_month)
      AS median_hours
  FROM {dataset}.learning_purchases
)
SELECT
  product_id,
  cohort_month,
  COUNT(*) AS buyers,
  COUNTIF(progress <> 'never_started') AS started,
  COUNTIF(progress = 'completed') AS completed,
  SAFE_DIVIDE(COUNTIF(progress <> 'never_started'), COUNT(*)) AS started_rate,
  SAFE_DIVIDE(COUNTIF(progress = 'completed'), COUNT(*)) AS completion_rate,
  MAX(median_hours) AS first_access_hours_median
FROM purchases
GROUP BY product_id, cohort_month
