"""The revenue and learning models, written once in BigQuery SQL (``sql/views/*.sql``), per warehouse.

Each file is the body of one view named after the file. ``{dataset}`` stands for the dataset: the
BigQuery adapter writes `` `project.dataset.table` ``; the embedded warehouse substitutes its schema and
transpiles the statement with sqlglot (``read="bigquery", write="duckdb"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import sqlglot

_TABLE_REF = re.compile(r"\{dataset\}\.([A-Za-z_][A-Za-z0-9_]*)")

# Dependency order: a view only reads tables and the views before it.
VIEW_ORDER: tuple[str, ...] = (
    "payment_states",
    "purchase_charges",
    "revenue_daily",
    "revenue_daily_totals",
    "subscription_months",
    "mrr_monthly",
    "churn_monthly",
    "refund_rates_monthly",
    "fx_rates_latest",
    "revenue_daily_converted",
    "learning_activity",
    "learning_purchases",
    "learning_cohorts",
    "refund_rate_by_progress",
)

LEARNING_VIEWS: tuple[str, ...] = tuple(
    name for name in VIEW_ORDER if "learning" in name or "progress" in name
)

# A stable order of rows for comparing and serving each view.
VIEW_KEYS: dict[str, tuple[str, ...]] = {
    "payment_states": ("event_id",),
    "purchase_charges": ("transaction", "recurrence_number"),
    "revenue_daily": ("day", "product_id", "currency"),
    "revenue_daily_totals": ("day", "currency"),
    "subscription_months": ("subscription_key", "month"),
    "mrr_monthly": ("month", "product_id", "currency"),
    "churn_monthly": ("month", "product_id"),
    "refund_rates_monthly": ("month", "product_id", "currency"),
    "fx_rates_latest": ("day", "currency", "reporting_currency"),
    "revenue_daily_converted": ("day", "product_id", "currency", "reporting_currency"),
    "learning_activity": ("activity_id", "transaction"),
    "learning_purchases": ("transaction",),
    "learning_cohorts": ("product_id", "cohort_month"),
    "refund_rate_by_progress": ("product_id", "bucket"),
}


@dataclass(frozen=True)
class View:
    name: str
    sql: str  # BigQuery dialect, with {dataset}

    def bigquery(self, qualified_dataset: str) -> str:
        return _TABLE_REF.sub(lambda m: f"`{qualified_dataset}.{m.group(1)}`", self.sql)

    def duckdb(self, schema: str) -> str:
        return transpile_to_duckdb(_TABLE_REF.sub(lambda m: f"{schema}.{m.group(1)}", self.sql))


@cache
def load_views() -> tuple[View, ...]:
    folder = resources.files("analytics").joinpath("sql", "views")
    names = sorted(item.name[:-4] for item in folder.iterdir() if item.name.endswith(".sql"))
    missing = set(names) ^ set(VIEW_ORDER)
    if missing:
        raise RuntimeError(f"sql/views and VIEW_ORDER disagree about: {sorted(missing)}")
    return tuple(View(name, folder.joinpath(f"{name}.sql").read_text("utf-8")) for name in VIEW_ORDER)


def transpile_to_duckdb(sql: str) -> str:
    return sqlglot.transpile(sql, read="bigquery", write="duckdb", pretty=True)[0]
