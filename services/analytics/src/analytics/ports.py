"""The warehouse port: analytics' own concern, so it lives here rather than in the shared library."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from datetime import date
from typing import Any

from analytics.domain.projection import Projection

Row = dict[str, Any]


class WarehouseUnavailable(Exception):
    """The warehouse could not take the write; nothing was acknowledged, the bus redelivers."""


class Warehouse(abc.ABC):
    """Append-only, idempotent by event id: writing a projection twice leaves the same rows."""

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create missing tables and views, add new columns. Idempotent."""

    @abc.abstractmethod
    def write(self, projection: Projection) -> int:
        """Durably add rows not already there (by ``event_id``); returns how many raw events were new."""

    @abc.abstractmethod
    def query_view(self, view: str, where: str = "", params: dict[str, Any] | None = None) -> list[Row]:
        """Rows of a view; ``where`` is a trusted SQL fragment with ``@name`` parameters."""

    def revenue_daily(
        self, start: date, end: date, currency: str | None = None, product: str | None = None
    ) -> list[Row]:
        """Rows per day and currency (never summed across currencies), for one product or all."""
        where = "day BETWEEN @start AND @end" + (" AND currency = @currency" if currency else "")
        params: dict[str, Any] = {"start": start, "end": end}
        if currency:
            params["currency"] = currency
        if product is None:
            return self.query_view("revenue_daily_totals", where, params)
        params["product"] = product
        return self.query_view("revenue_daily", where + " AND product_id = @product", params)

    @abc.abstractmethod
    def relation(self, name: str) -> str:
        """How SQL names a table or view of the warehouse."""

    def distinct(self, view: str, column: str) -> list[Any]:
        """The distinct non-null values of one column of a view (for the dashboard's filters)."""
        if not (view.isidentifier() and column.isidentifier()):
            raise ValueError(f"bad name {view}.{column}")
        sql = f"SELECT DISTINCT {column} AS v FROM {self.relation(view)} WHERE {column} IS NOT NULL"  # noqa: S608
        return sorted(row["v"] for row in self.query(sql))

    @abc.abstractmethod
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Rows of a query in the warehouse's own dialect."""

    @abc.abstractmethod
    def load_rates(self, rows: list[Row]) -> int:
        """Append conversion rates (``fx_rates``); the latest load of a day and pair wins."""

    @abc.abstractmethod
    def iter_raw_events(self, batch_size: int = 10_000) -> Iterator[list[Row]]:
        """The raw log in time order, in batches (for the rebuild)."""

    @abc.abstractmethod
    def count(self, table: str) -> int: ...

    @abc.abstractmethod
    def truncate_facts(self) -> None:
        """Empty the fact tables (never ``events``): the first step of a rebuild."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise when unreachable (readiness)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
