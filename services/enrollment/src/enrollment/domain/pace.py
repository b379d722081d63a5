"""How long the LMS queue takes to drain: the ETA an operator and a waiting buyer are shown. Pure.

Two limits bound the pace: the short window (calls per second, e.g. 190 per 5 s) and the hourly quota
(``remaining`` now, back to ``limit`` at ``reset_in``, then every ``window`` seconds).
"""

from __future__ import annotations

import math


def eta_seconds(
    position: int,
    *,
    calls_per_student: float,
    calls_per_second: float,
    quota_remaining: int,
    quota_limit: int,
    quota_reset_in: float,
    quota_window: float = 3600.0,
) -> float:
    """Seconds until the student at ``position`` (1 = next) has been served, at the current pace."""
    if position <= 0:
        return 0.0
    rate = max(calls_per_second, 1e-9)
    need = position * max(calls_per_student, 0.0)
    remaining = max(quota_remaining, 0)
    if need <= remaining:
        return need / rate
    # Spend what is left of this window's quota, wait for the reset, then whole windows of quota.
    elapsed = max(remaining / rate, max(quota_reset_in, 0.0))
    need -= remaining
    limit = max(quota_limit, 1)
    full_windows = math.floor(need / limit)
    rest = need - full_windows * limit
    if rest == 0 and full_windows > 0:
        full_windows -= 1
        rest = limit
    return elapsed + full_windows * quota_window + rest / rate
