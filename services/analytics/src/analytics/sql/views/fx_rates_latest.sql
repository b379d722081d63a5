-- The rate of each (day, currency, reporting currency) the owner loaded last (analytics rates load).
SELECT * EXCEPT (rn)
FROM (
  SELECT
    r.*,
    ROW_NUMBER() OVER (
      PARTITION BY r.day, r.currency, r.reporting_currency
      ORDER BY r.loaded_at DESC, r.source DESC
    ) AS rn
  FROM {dataset}.fx_rates AS r
)
WHERE rn = 1
