"""Calendar features in the site's local time: time of day, weekday, season, holidays.

All features are computed from the timestamp of the row alone (known in advance), in the
site's IANA time zone, so daylight-saving days have 23 or 25 local hours and the local hour
follows the clock on the wall. Holidays come from the ``holidays`` package for the site's
``country`` and ``subdivision`` (Scotland: country ``GB``, subdivision ``SCT``).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from functools import lru_cache
from typing import Final

import holidays
import numpy as np
import polars as pl

from features.time_grid import US_PER_DAY
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, SchemaError

CALENDAR_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "hour",
    "day_of_week",
    "is_weekend",
    "month",
    "day_of_year",
    "time_of_day_sin",
    "time_of_day_cos",
    "day_of_year_sin",
    "day_of_year_cos",
    "is_holiday",
    "is_bridge_day",
)
"""Columns added by :func:`add_calendar_features`, in order."""

_TAU: Final = 2.0 * math.pi


def holiday_dates(site: SiteConfig, *, first: date, last: date) -> pl.Series:
    """Return the public holidays of the site's country and subdivision in ``[first, last]``.

    Empty when the site has no ``country``. Raises :class:`ConfigError` for a country or
    subdivision the ``holidays`` package does not know.
    """
    if site.country is None or first > last:
        return pl.Series("date", [], dtype=pl.Date)
    try:
        days = _holidays(site.country, site.subdivision, first.year, last.year)
    except NotImplementedError as exc:
        msg = (
            f"site {site.site_id!r}: holidays unknown for country={site.country!r}, "
            f"subdivision={site.subdivision!r}; fix country/subdivision in sites.toml"
        )
        raise ConfigError(msg) from exc
    return pl.Series("date", [d for d in days if first <= d <= last], dtype=pl.Date)


@lru_cache(maxsize=64)
def _holidays(
    country: str, subdivision: str | None, first_year: int, last_year: int
) -> tuple[date, ...]:
    years = range(first_year, last_year + 1)
    return tuple(sorted(holidays.country_holidays(country, subdiv=subdivision, years=years)))


_US_PER_MINUTE: Final = 60_000_000


def _days_off(days: np.ndarray, holidays_: np.ndarray) -> np.ndarray:
    """Whether each day [days since 1970-01-01] is a Saturday, Sunday or holiday."""
    return ((days + 3) % 7 >= 5) | np.isin(days, holidays_)


def _holiday_flags(days: np.ndarray, *, site: SiteConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per local day [days since 1970-01-01]: public holiday, bridge day (see below)."""
    found = np.zeros(0, dtype=np.int64)
    if days.size:
        first, last = (
            date(1970, 1, 1) + timedelta(days=int(d) + k)
            for d, k in ((days.min(), -1), (days.max(), 1))
        )
        found = holiday_dates(site, first=first, last=last).to_physical().to_numpy()
    off_before, off_after = _days_off(days - 1, found), _days_off(days + 1, found)
    bridge = ~_days_off(days, found) & off_before & off_after
    bridge &= np.isin(days - 1, found) | np.isin(days + 1, found)
    return np.isin(days, found), bridge


def compute_calendar_arrays(interval_us: np.ndarray, *, site: SiteConfig) -> dict[str, np.ndarray]:
    """Return :data:`CALENDAR_FEATURE_COLUMNS` of UTC times, as arrays.

    Parameters
    ----------
    interval_us
        UTC timestamps [us since epoch]; best unique (each is computed on its own).
    site
        Gives the time zone, country and subdivision.

    Returns
    -------
    dict
        One array per column, as :func:`add_calendar_features` describes them.
    """
    # wall-clock time as if it were UTC: fields are then plain integer arithmetic
    local_us = (
        pl.Series(interval_us, dtype=pl.Int64)
        .cast(pl.Datetime("us", "UTC"))
        .dt.convert_time_zone(site.timezone)
        .dt.replace_time_zone(None)
        .dt.epoch("us")
        .to_numpy()
    )
    days = local_us // US_PER_DAY
    minute_of_day = local_us % US_PER_DAY // _US_PER_MINUTE
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day = days.astype("datetime64[D]")
    year_start = day.astype("datetime64[Y]")
    month = (day.astype("datetime64[M]") - year_start.astype("datetime64[M]")).astype(np.int64)
    day_of_year = (day - year_start.astype("datetime64[D]")).astype(np.int64) + 1
    year = year_start.astype(np.int64) + 1970
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    holiday, bridge = _holiday_flags(days, site=site)
    hour = minute_of_day // 60
    # trigonometry in numpy: several times faster than polars' sin/cos here
    time_angle = (hour * 60.0 + minute_of_day % 60) / 1440.0 * _TAU
    day_angle = (day_of_year - 1.0) / np.where(leap, 366.0, 365.0) * _TAU
    return {
        "hour": hour.astype(np.int8),
        "day_of_week": weekday.astype(np.int8),
        "is_weekend": weekday >= 5,
        "month": (month + 1).astype(np.int8),
        "day_of_year": day_of_year.astype(np.int16),
        "time_of_day_sin": np.sin(time_angle),
        "time_of_day_cos": np.cos(time_angle),
        "day_of_year_sin": np.sin(day_angle),
        "day_of_year_cos": np.cos(day_angle),
        "is_holiday": holiday,
        "is_bridge_day": bridge,
    }


def add_calendar_features(
    frame: pl.DataFrame, *, site: SiteConfig, column: str = "interval_start"
) -> pl.DataFrame:
    """Add calendar features of ``column`` in the site's local time.

    Parameters
    ----------
    frame
        Any frame with the UTC timestamp ``column`` (no nulls).
    site
        Gives the time zone, country and subdivision.
    column
        Timestamp to describe, usually the target ``interval_start``.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus :data:`CALENDAR_FEATURE_COLUMNS`: ``hour`` [0-23] local clock hour,
        ``day_of_week`` [0 = Monday], ``is_weekend``, ``month`` [1-12], ``day_of_year``
        [1-366], sine and cosine of the local time of day and of the day of year [-],
        ``is_holiday`` (public holiday) and ``is_bridge_day`` (a working day between two days
        off, at least one of them a holiday).
    """
    if frame[column].has_nulls():
        row = int(frame[column].is_null().arg_true()[0])
        msg = (
            f"{column} is null in row {row} of {frame.height}; calendar features need a "
            "timestamp on every row: drop or fill those rows first"
        )
        raise SchemaError(msg)
    times = frame[column].cast(pl.Datetime("us", "UTC")).dt.epoch("us").to_numpy()
    unique, inverse = np.unique(times, return_inverse=True)
    arrays = compute_calendar_arrays(unique, site=site)
    others = [c for c in frame.columns if c not in CALENDAR_FEATURE_COLUMNS]
    return frame.select(others).with_columns(
        pl.Series(name, values[inverse]) for name, values in arrays.items()
    )
