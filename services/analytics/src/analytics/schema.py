"""The warehouse schema as code: one logical definition, rendered as BigQuery DDL and as DuckDB DDL.

Every table is keyed by ``event_id`` (the CloudEvent id), partitioned by the day of its time column and
clustered by the columns the revenue views filter on. ``migrate`` in each adapter creates what is missing
and adds new nullable columns, so running it again is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

# logical type -> (BigQuery, DuckDB)
TYPES: dict[str, tuple[str, str]] = {
    "string": ("STRING", "VARCHAR"),
    "int": ("INT64", "BIGINT"),
    "bool": ("BOOL", "BOOLEAN"),
    "money": ("NUMERIC", "DECIMAL(38, 9)"),
    "timestamp": ("TIMESTAMP", "TIMESTAMP"),  # DuckDB: naive, always UTC
    "json": ("JSON", "JSON"),
    "date": ("DATE", "DATE"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    partition_by: str  # a timestamp (partitioned by its day) or a date column
    cluster_by: tuple[str, ...]
    description: str = ""
    # DuckDB's dedupe key (``INSERT ... ON CONFLICT DO NOTHING``); None for append-only tables whose
    # views pick the latest row. BigQuery tables have no keys: there every table is appended to and
    # the views deduplicate.
    primary_key: tuple[str, ...] | None = ("event_id",)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def bigquery_ddl(self, qualified_dataset: str) -> str:
        cols = ",\n  ".join(
            f"{c.name} {TYPES[c.type][0]}{' NOT NULL' if c.required else ''}" for c in self.columns
        )
        partition = self.partition_by if self.column(self.partition_by).type == "date" else None
        return (
            f"CREATE TABLE IF NOT EXISTS `{qualified_dataset}.{self.name}` (\n  {cols}\n)\n"
            f"PARTITION BY {partition or f'DATE({self.partition_by})'}\n"
            f"CLUSTER BY {', '.join(self.cluster_by)}\n"
            f'OPTIONS (description = "{self.description}")'
        )

    def duckdb_ddl(self, schema: str) -> str:
        cols = ",\n  ".join(
            f"{c.name} {TYPES[c.type][1]}{' NOT NULL' if c.required else ''}" for c in self.columns
        )
        # DuckDB has no partitions; the primary key gives INSERT ... ON CONFLICT DO NOTHING its dedupe.
        key = f",\n  PRIMARY KEY ({', '.join(self.primary_key)})" if self.primary_key else ""
        return f"CREATE TABLE IF NOT EXISTS {schema}.{self.name} (\n  {cols}{key}\n)"

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


def _c(name: str, type_: str, required: bool = False, description: str = "") -> Column:
    return Column(name, type_, required, description)


EVENTS = Table(
    "events",
    (
        _c("event_id", "string", True, "CloudEvent id: the dedupe key of every table"),
        _c("type", "string", True),
        _c("source", "string"),
        _c("time", "timestamp", True),
        _c("subject", "string"),
        _c("correlation_id", "string"),
        _c("payload", "json", False, "event data with personal data removed or pseudonymised"),
        _c("recorded_at", "timestamp"),
    ),
    partition_by="time",
    cluster_by=("type",),
    description="The raw event log (pseudonymised); the warehouse is rebuilt from it",
)

PAYMENTS = Table(
    "payments",
    (
        _c("event_id", "string", True),
        _c("kind", "string", True, "purchase_approved, purchase_refunded, purchase_chargeback, ..."),
        _c("status", "string"),
        _c("transaction", "string"),
        _c("product_id", "string"),
        _c("plan_id", "string"),
        _c("offer_code", "string"),
        _c("currency", "string"),
        _c("price", "money", False, "offer price: what gross revenue counts"),
        _c("producer_net", "money", False, "value of the PRODUCER commission, in producer_currency"),
        _c("recurrence_number", "int"),
        _c("is_subscription", "bool"),
        _c("subscriber_code", "string"),
        _c("buyer_key", "string", False, "HMAC-SHA256 of the lower-cased buyer email"),
        _c("occurred_at", "timestamp", True),
        _c(
            "full_price",
            "money",
            False,
            "what the buyer paid incl. fees and interest, in full_price_currency",
        ),
        _c("full_price_currency", "string"),
        _c("producer_currency", "string", False, "currency of the PRODUCER commission"),
    ),
    partition_by="occurred_at",
    cluster_by=("product_id", "currency", "kind"),
    description="One row per purchase state change",
)

ENROLLMENTS = Table(
    "enrollments",
    (
        _c("event_id", "string", True),
        _c("kind", "string", True, "granted, revoked, failed, parked"),
        _c("entitlement_id", "string"),
        _c("course_id", "string"),
        _c("product_id", "string"),
        _c("transaction", "string"),
        _c("access_id", "string"),
        _c("learner_key", "string", False, "HMAC-SHA256 of the lower-cased learner email"),
        _c("reason", "string"),
        _c("occurred_at", "timestamp", True),
    ),
    partition_by="occurred_at",
    cluster_by=("product_id", "course_id", "kind"),
    description="One row per enrollment change on TalentLMS",
)

SUBSCRIPTIONS = Table(
    "subscriptions",
    (
        _c("event_id", "string", True),
        _c("kind", "string", True, "access_suspended, access_restored, access_expired, plan_changed"),
        _c("access_id", "string"),
        _c("subscriber_code", "string"),
        _c("transaction", "string"),
        _c("product_id", "string"),
        _c("plan_id", "string"),
        _c("previous_plan_id", "string"),
        _c("state", "string"),
        _c("reason", "string"),
        _c("buyer_key", "string"),
        _c("paid_through", "timestamp"),
        _c("effective_at", "timestamp", True),
    ),
    partition_by="effective_at",
    cluster_by=("product_id", "kind"),
    description="One row per access change decided by the subscription service",
)

CATALOGUE = Table(
    "catalogue",
    (
        _c("event_id", "string", True),
        _c("kind", "string", True, "product_mapped, product_unmapped"),
        _c("product_id", "string"),
        _c("revision", "int"),
        _c("course_count", "int"),
        _c("removed", "bool"),
        _c("changed_at", "timestamp", True),
    ),
    partition_by="changed_at",
    cluster_by=("product_id",),
    description="Product to course mapping changes",
)

FX_RATES = Table(
    "fx_rates",
    (
        _c("day", "date", True, "the UTC day the rate applies to"),
        _c("currency", "string", True, "the currency converted from"),
        _c("reporting_currency", "string", True, "the currency converted to"),
        _c("rate", "money", True, "1 unit of currency = rate units of reporting_currency"),
        _c("source", "string", False, "where the owner took the rate from (file name)"),
        _c("loaded_at", "timestamp", True, "the latest load of a (day, currency, reporting) pair wins"),
    ),
    partition_by="day",
    cluster_by=("currency", "reporting_currency"),
    description="Daily conversion rates the owner loads (analytics rates load); never guessed",
    primary_key=None,
)

LEARNING = Table(
    "learning",
    (
        _c("event_id", "string", True),
        _c("activity_id", "string", True, "TalentLMS timeline entry: a re-read or replay repeats it"),
        _c("activity", "string", True, "signed_in, course_completed"),
        _c("lms_user_id", "string", False, "TalentLMS user id (no personal data)"),
        _c("course_id", "string", False, "the completed course; NULL for signed_in"),
        _c("purchase_index", "int", True, "position in the event's purchases (0 when it has none)"),
        _c("access_id", "string", False, "the access source the activity is attributed to"),
        _c("transaction", "string", False, "the Hotmart transaction of that access source"),
        _c("product_id", "string"),
        _c("occurred_at", "timestamp", True, "when it happened on TalentLMS"),
        _c("observed_at", "timestamp", True, "when enrollment read it from the timeline"),
    ),
    partition_by="occurred_at",
    cluster_by=("transaction", "activity"),
    description="One row per learning activity and attributed purchase (TalentLMS timeline)",
    # One event carries several purchases: DuckDB's dedupe key is the event and the purchase's place.
    primary_key=("event_id", "purchase_index"),
)

EVENT_TABLES: tuple[Table, ...] = (EVENTS, PAYMENTS, ENROLLMENTS, SUBSCRIPTIONS, CATALOGUE, LEARNING)
TABLES: tuple[Table, ...] = (*EVENT_TABLES, FX_RATES)
FACT_TABLES: tuple[Table, ...] = (PAYMENTS, ENROLLMENTS, SUBSCRIPTIONS, CATALOGUE, LEARNING)
TABLES_BY_NAME = {table.name: table for table in TABLES}
