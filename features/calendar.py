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
_EPOCH: Final = date(1970, 1, 1)


def holiday_dates(site: SiteConfig, *, first: date, last: date) -> pl.Series:
    """Return the public holidays of the site's country and subdivision in ``[first, last]``.

    Empty when the site has no ``country``. Raises :class:`ConfigError` for a country or
    subdivision the ``holidays`` package does not know.
    """
    return pl.Series("date", _holiday_days(site, first=first, last=last)).cast(pl.Date)


def _holiday_days(site: SiteConfig, *, first: date, last: date) -> np.ndarray:
    """:func:`holiday_dates` as sorted [days since 1970-01-01] (int64)."""
    if site.country is None or first > last:
        return np.zeros(0, dtype=np.int64)
    try:
        days = _holidays(site.country, site.subdivision, first.year, last.year)
    except NotImplementedError as exc:
        msg = (
            f"site {site.site_id!r}: holidays unknown for country={site.country!r}, "
            f"subdivision={site.subdivision!r}; fix country/subdivision in sites.toml"
        )
        raise ConfigError(msg) from exc
    bounds = [(d - _EPOCH).days for d in (first, last)]
    return days[np.searchsorted(days, bounds[0]) : np.searchsorted(days, bounds[1], side="right")]


@lru_cache(maxsize=64)
def _holidays(country: str, subdivision: str | None, first_year: int, last_year: int) -> np.ndarray:
    """Sorted holidays of the years [days since 1970-01-01] (int64, read-only: cached)."""
    years = range(first_year, last_year + 1)
    found = holidays.country_holidays(country, subdiv=subdivision, years=years)
    days = np.array(sorted((d - _EPOCH).days for d in found), dtype=np.int64)
    days.flags.writeable = False
    return days


_US_PER_MINUTE: Final = 60_000_000


def _holiday_flags(
    first_day: int, count: int, *, site: SiteConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Return per local day whether it is a public holiday and whether a bridge day.

    For ``count`` days from ``first_day`` [days since 1970-01-01]. A bridge day is a working
    day between two days off, at least one of them a holiday.
    """
    days = np.arange(first_day - 1, first_day + count + 1)  # one more day on either side
    holiday = np.zeros(days.size, dtype=bool)
    if count:
        first, last = (_EPOCH + timedelta(days=int(d)) for d in (days[0], days[-1]))
        holiday[_holiday_days(site, first=first, last=last) - days[0]] = True
    off = ((days + 3) % 7 >= 5) | holiday  # 1970-01-01 was a Thursday: Saturday is 5
    bridge = ~off[1:-1] & off[:-2] & off[2:] & (holiday[:-2] | holiday[2:])
    return holiday[1:-1], bridge


def _day_table(first_day: int, count: int, *, site: SiteConfig) -> dict[str, np.ndarray]:
    """Return the calendar columns that depend on the local day only, for ``count`` days.

    From ``first_day`` [days since 1970-01-01] on, one value per day.
    """
    days = np.arange(first_day, first_day + count)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day = days.astype("datetime64[D]")
    year_start = day.astype("datetime64[Y]")
    month = (day.astype("datetime64[M]") - year_start.astype("datetime64[M]")).astype(np.int64)
    day_of_year = (day - year_start.astype("datetime64[D]")).astype(np.int64) + 1
    year = year_start.astype(np.int64) + 1970
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    holiday, bridge = _holiday_flags(first_day, count, site=site)
    day_angle = (day_of_year - 1.0) / np.where(leap, 366.0, 365.0) * _TAU
    return {
        "day_of_week": weekday.astype(np.int8),
        "is_weekend": weekday >= 5,
        "month": (month + 1).astype(np.int8),
        "day_of_year": day_of_year.astype(np.int16),
        "day_of_year_sin": np.sin(day_angle),
        "day_of_year_cos": np.cos(day_angle),
        "is_holiday": holiday,
        "is_bridge_day": bridge,
    }


@lru_cache(maxsize=1)
def _minute_table() -> dict[str, np.ndarray]:
    """Return the calendar columns that depend on the local time of day, per minute of day."""
    minute_of_day = np.arange(1440)
    hour = minute_of_day // 60
    time_angle = (hour * 60.0 + minute_of_day % 60) / 1440.0 * _TAU
    return {
        "hour": hour.astype(np.int8),
        "time_of_day_sin": np.sin(time_angle),
        "time_of_day_cos": np.cos(time_angle),
    }


def compute_wall_clock_us(interval_us: np.ndarray, *, timezone: str) -> np.ndarray:
    """Return the wall-clock time in ``timezone`` of UTC instants, read as if it were UTC.

    Parameters
    ----------
    interval_us
        UTC instants [us since epoch].
    timezone
        IANA time zone, e.g. ``"Europe/London"``.

    Returns
    -------
    numpy.ndarray
        The local date and time of each instant as [us since epoch] (int64), so calendar
        fields are plain integer arithmetic.

    Notes
    -----
    The offsets come from polars, whose bundled time-zone rules hold for any year (Arrow's
    ``local_timestamp``, 4x faster, reads the system's zone files, which list changes only to
    2037 here: it drops daylight-saving time after that). They are looked up once per UTC day
    and per instant only on days whose offset changes, which is exact as long as a zone
    changes its offset at most once a day: no zone in the tz database has two changes less
    than 48 h apart.
    """
    if interval_us.size == 0:
        return np.zeros(0, dtype=np.int64)
    day = interval_us // US_PER_DAY
    first = int(day.min())
    count = int(day.max()) - first + 1
    if count >= interval_us.size:  # no more instants than days: one at a time
        return _wall_clock_by_instant(interval_us, timezone)
    midnights = (first + np.arange(count + 1, dtype=np.int64)) * US_PER_DAY
    offsets = _wall_clock_by_instant(midnights, timezone) - midnights  # at 00:00 UTC [us]
    day -= first
    local = interval_us + offsets[day]
    changing = (offsets[1:] != offsets[:-1])[day]  # the offset changes during the day
    if changing.any():
        local[changing] = _wall_clock_by_instant(interval_us[changing], timezone)
    return local


def _wall_clock_by_instant(interval_us: np.ndarray, timezone: str) -> np.ndarray:
    """:func:`compute_wall_clock_us`, converting each instant on its own (polars)."""
    instants = pl.Series("t", interval_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
    wall_clock = pl.col("t").dt.convert_time_zone(timezone).dt.replace_time_zone(None)
    return instants.to_frame().select(wall_clock.to_physical()).to_series().to_numpy()


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
    local_us = compute_wall_clock_us(interval_us, timezone=site.timezone)
    days = local_us // US_PER_DAY
    first_day = int(days.min()) if days.size else 0
    count = int(days.max()) - first_day + 1 if days.size else 0
    # each column from a table per local day or per minute of the day, read by index
    day_table = _day_table(first_day, count, site=site)
    day = days - first_day
    minute = local_us % US_PER_DAY // _US_PER_MINUTE
    tables = {name: (values, day) for name, values in day_table.items()}
    tables |= {name: (values, minute) for name, values in _minute_table().items()}
    return {name: np.take(*tables[name]) for name in CALENDAR_FEATURE_COLUMNS}


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
