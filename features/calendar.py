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

from forecasting.config import SiteConfig
from forecasting.errors import ConfigError

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


def _is_day_off(day: pl.Expr, holidays_: pl.Series) -> pl.Expr:
    return (day.dt.weekday() >= 6) | day.is_in(holidays_.implode())


def add_calendar_features(
    frame: pl.DataFrame, *, site: SiteConfig, column: str = "interval_start"
) -> pl.DataFrame:
    """Add calendar features of ``column`` in the site's local time.

    Parameters
    ----------
    frame
        Any frame with the UTC timestamp ``column``.
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
    # naive wall-clock time: field extraction on it avoids a time-zone lookup per field
    local = pl.col(column).dt.convert_time_zone(site.timezone).dt.replace_time_zone(None)
    frame = frame.with_columns(local.dt.date().alias("_local_date"), local.alias("_local"))
    dates = frame["_local_date"].drop_nulls().unique().sort().to_list()
    first, last = (dates[0], dates[-1]) if dates else (date.max, date.min)
    found = holiday_dates(site, first=first - timedelta(days=1), last=last + timedelta(days=1))
    day = pl.col("_local_date")
    one = pl.duration(days=1)
    holiday = day.is_in(found.implode())
    neighbour_holiday = (day - one).is_in(found.implode()) | (day + one).is_in(found.implode())
    working = ~_is_day_off(day, found)
    frame = frame.with_columns(
        pl.col("_local").dt.hour().cast(pl.Int8).alias("hour"),
        (pl.col("_local").dt.weekday() - 1).cast(pl.Int8).alias("day_of_week"),
        (pl.col("_local").dt.weekday() >= 6).alias("is_weekend"),
        pl.col("_local").dt.month().cast(pl.Int8).alias("month"),
        pl.col("_local").dt.ordinal_day().cast(pl.Int16).alias("day_of_year"),
        pl.col("_local").dt.minute().cast(pl.Int16).alias("_minute"),
        pl.col("_local").dt.is_leap_year().alias("_leap"),
        holiday.alias("is_holiday"),
        (
            working
            & _is_day_off(day - one, found)
            & _is_day_off(day + one, found)
            & neighbour_holiday
        ).alias("is_bridge_day"),
    )
    # trigonometry in numpy: several times faster than polars' sin/cos here
    time_angle = (frame["hour"].to_numpy() * 60.0 + frame["_minute"].to_numpy()) / 1440.0 * _TAU
    year_days = np.where(frame["_leap"].to_numpy(), 366.0, 365.0)
    day_angle = (frame["day_of_year"].to_numpy() - 1.0) / year_days * _TAU
    trig = {
        "time_of_day_sin": np.sin(time_angle),
        "time_of_day_cos": np.cos(time_angle),
        "day_of_year_sin": np.sin(day_angle),
        "day_of_year_cos": np.cos(day_angle),
    }
    temporary = ("_local_date", "_local", "_minute", "_leap")
    others = [c for c in frame.columns if c not in (*temporary, *CALENDAR_FEATURE_COLUMNS)]
    return frame.with_columns(pl.Series(name, values) for name, values in trig.items()).select(
        *others, *CALENDAR_FEATURE_COLUMNS
    )
