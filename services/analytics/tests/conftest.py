"""Fixtures for analytics' own tests: an embedded (DuckDB) warehouse in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.adapters.duckdb_warehouse import DuckDBWarehouse

KEY = b"test-pseudonym-key"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "analytics.duckdb")
    warehouse.migrate()
    return warehouse
