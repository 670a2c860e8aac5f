"""Time as integers on the interval grid: microseconds since the Unix epoch, UTC.

The array code of :mod:`features` works in [us since epoch] (int64, UTC). Interval ``k`` of a
grid of step ``step_us`` starts at ``k * step_us``: intervals are aligned to the epoch, so to
UTC midnight, and labelled by their start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

from forecasting.errors import ConfigError
from forecasting.schemas import UTC_DATETIME

ONE_US: Final = timedelta(microseconds=1)
"""One microsecond: ``duration // ONE_US`` is a duration in [us]."""
US_PER_HOUR: Final = 3.6e9
"""Microseconds per hour [us/h], a float so that quotients are [h]."""
US_PER_DAY: Final = 86_400_000_000
"""Microseconds per day [us]."""


def compute_epoch_us(value: datetime) -> int:
    """Return ``value`` in [us since epoch] (a naive datetime is taken as UTC)."""
    return int(pl.Series([value]).cast(UTC_DATETIME).dt.epoch("us").item())


def check_resolution(resolution: timedelta) -> None:
    """Raise :class:`ConfigError` unless ``resolution`` is positive and divides one day."""
    res_us = resolution // ONE_US
    if res_us <= 0 or US_PER_DAY % res_us:
        msg = (
            f"resolution {resolution!r} must be positive and divide one day evenly; "
            "use e.g. timedelta(minutes=15) or timedelta(hours=1)"
        )
        raise ConfigError(msg)
