"""The Revenue and Learning pages' question: which days, which product, shown in which currency.

Pure: the page and its JSON routes read the query string through ``report_query`` and forward only what
passed it, so a malformed date or product id is refused here with a sentence, before any call reaches
analytics (which checks the same again: it is the authority on its own API).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

PRESETS = ("7d", "30d", "90d", "12m")
DEFAULT_PRESET = "90d"
MAX_RANGE_DAYS = 366  # what analytics accepts
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PRODUCT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a Hotmart product id, as analytics checks it
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class BadQuery(ValueError):
    """A parameter the pages cannot forward; the message says which and how it should look."""


@dataclass(frozen=True)
class ReportQuery:
    start: date
    end: date
    product: str | None = None
    preset: str | None = None
    currency: str | None = None
    report: str | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def params(self) -> dict[str, str]:
        """What analytics is asked (the chart currency is the page's choice, not a filter)."""
        out = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if self.product:
            out["product"] = self.product
        return out


def preset_range(name: str, today: date) -> tuple[date, date]:
    """The last N days including today; 12 m is the year up to today (365 or 366 days)."""
    if name == "12m":
        try:
            year_ago = today.replace(year=today.year - 1)
        except ValueError:  # 29 February
            year_ago = today.replace(year=today.year - 1, day=28)
        return year_ago + timedelta(days=1), today
    days = {"7d": 7, "30d": 30, "90d": 90}.get(name)
    if days is None:
        raise BadQuery(f"range must be one of {', '.join(PRESETS)}")
    return today - timedelta(days=days - 1), today


def _day(value: str, name: str) -> date:
    if _DAY.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise BadQuery(f"{name} must be a date as YYYY-MM-DD")


def _code(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip() or None
    if value is not None and not _CURRENCY.match(value):
        raise BadQuery(f"{name} must be an ISO 4217 code such as BRL")
    return value


def report_query(args: Mapping[str, str], today: date) -> ReportQuery:
    """``range`` (a preset) or ``from``/``to`` (both), an optional ``product``, ``currency``, ``report``.

    Explicit dates win over a preset; with neither, the last 90 days.
    """
    preset = (args.get("range") or "").strip() or None
    start_text, end_text = (args.get("from") or "").strip(), (args.get("to") or "").strip()
    if start_text or end_text:
        if not (start_text and end_text):
            raise BadQuery("from and to go together")
        start, end = _day(start_text, "from"), _day(end_text, "to")
        if start > end:
            raise BadQuery("from must not be after to")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise BadQuery(f"the range is limited to {MAX_RANGE_DAYS} days")
        if preset is not None and preset_range(preset, today) != (start, end):
            preset = None  # the dates were edited: no preset button is the current one
    else:
        preset = preset or DEFAULT_PRESET
        start, end = preset_range(preset, today)
    product = (args.get("product") or "").strip() or None
    if product is not None and not _PRODUCT.match(product):
        raise BadQuery("product must be a Hotmart product id (letters, digits, . _ : -)")
    return ReportQuery(
        start, end, product, preset, currency=_code(args, "currency"), report=_code(args, "report")
    )


def default_query(today: date) -> ReportQuery:
    start, end = preset_range(DEFAULT_PRESET, today)
    return ReportQuery(start, end, preset=DEFAULT_PRESET)
