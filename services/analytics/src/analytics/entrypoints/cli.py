"""``analytics``: the owner's command line for the warehouse.

    analytics rates load RATES.csv     # columns: day,currency,reporting_currency,rate
    analytics rates show [--reporting EUR]

Rates are what the owner decides (their bank's, their accountant's); CourseBridge never fetches or
guesses one. ``rate`` converts 1 unit of ``currency`` into ``reporting_currency`` on that UTC day.
A file is checked whole before anything is written: one bad line and nothing is loaded. Loading a day
again replaces its rate (the latest load wins in ``fx_rates_latest``).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from analytics.bootstrap import open_warehouse
from analytics.config import AnalyticsSettings

_CURRENCY = re.compile(r"^[A-Z]{3}$")
COLUMNS = ("day", "currency", "reporting_currency", "rate")


class BadRatesFile(ValueError):
    pass


def parse_rates(path: Path, *, loaded_at: datetime | None = None) -> list[dict[str, Any]]:
    """Rows for ``fx_rates`` from a CSV file; ``BadRatesFile`` names the first bad line."""
    loaded_at = loaded_at or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or set(COLUMNS) - {f.strip() for f in reader.fieldnames}:
            raise BadRatesFile(f"{path}: the header must name the columns {', '.join(COLUMNS)}")
        for number, raw in enumerate(reader, start=2):
            line = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            try:
                day = date.fromisoformat(line["day"])
                rate = Decimal(line["rate"])
            except (ValueError, InvalidOperation):
                raise BadRatesFile(f"{path}:{number}: day must be YYYY-MM-DD and rate a number") from None
            currency, reporting = line["currency"].upper(), line["reporting_currency"].upper()
            if not (_CURRENCY.match(currency) and _CURRENCY.match(reporting)):
                raise BadRatesFile(f"{path}:{number}: currencies must be ISO 4217 codes such as BRL")
            if currency == reporting:
                raise BadRatesFile(f"{path}:{number}: {currency} into itself needs no rate")
            if not rate.is_finite() or rate <= 0:
                raise BadRatesFile(f"{path}:{number}: the rate must be a positive number")
            rows.append(
                {
                    "day": day,
                    "currency": currency,
                    "reporting_currency": reporting,
                    "rate": rate.quantize(Decimal("0.000000001")),
                    "source": path.name,
                    "loaded_at": loaded_at,
                }
            )
    if not rows:
        raise BadRatesFile(f"{path}: no rates")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rates = commands.add_parser("rates", help="daily conversion rates into a reporting currency")
    actions = rates.add_subparsers(dest="action", required=True)
    load = actions.add_parser("load", help="load a CSV file: day,currency,reporting_currency,rate")
    load.add_argument("file", type=Path)
    show = actions.add_parser("show", help="print the rates in force")
    show.add_argument("--reporting", default=None)
    args = parser.parse_args(argv)

    settings = AnalyticsSettings.from_env()
    warehouse = open_warehouse(settings)
    warehouse.migrate()
    if args.action == "load":
        try:
            rows = parse_rates(args.file)
        except (OSError, BadRatesFile) as error:
            print(f"nothing loaded: {error}", file=sys.stderr)
            return 2
        warehouse.load_rates(rows)
        pairs = sorted({f"{r['currency']}->{r['reporting_currency']}" for r in rows})
        days = sorted({r["day"] for r in rows})
        print(f"loaded {len(rows)} rates ({', '.join(pairs)}) for {days[0]} to {days[-1]}")
        return 0
    where, params = "", {}
    if args.reporting:
        where, params = "reporting_currency = @reporting", {"reporting": args.reporting.upper()}
    for row in warehouse.query_view("fx_rates_latest", where, params):
        print(f"{row['day']} {row['currency']}->{row['reporting_currency']} {row['rate']} ({row['source']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
