"""The one bounded wait every test under tests/ uses: poll a condition, fail with what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    what: str = "condition",
    timeout: float = 30.0,
    interval: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy and return it; ``AssertionError`` after
    ``timeout`` seconds. Exceptions of the ``tolerate`` types (e.g. connection refused while a process
    starts) count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except tolerate as error:
            last_error = error
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
