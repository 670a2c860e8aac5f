from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from features.calendar import (
    CALENDAR_FEATURE_COLUMNS,
    add_calendar_features,
    compute_wall_clock_us,
    holiday_dates,
)
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, SchemaError


def _hours_of_local_day(site: SiteConfig, day: date) -> pl.DataFrame:
    """Hourly UTC intervals from two days around ``day``, kept where the local date is ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    frame = pl.DataFrame(
        {"interval_start": [start + timedelta(hours=k) for k in range(72)]},
        schema={"interval_start": pl.Datetime("us", "UTC")},
    )
    local_day = pl.col("interval_start").dt.convert_time_zone(site.timezone).dt.date()
    return add_calendar_features(frame.filter(local_day == day), site=site)


@pytest.mark.parametrize(
    ("day", "hours", "local_hours"),
    [
        pytest.param(date(2018, 3, 25), 23, [0, *range(2, 24)], id="spring-forward-23h"),
        pytest.param(date(2018, 10, 28), 25, [0, 1, 1, *range(2, 24)], id="fall-back-25h"),
        pytest.param(date(2018, 6, 24), 24, list(range(24)), id="summer-sunday-24h"),
    ],
)
def test_dst_days_have_23_and_25_local_hours(
    site: SiteConfig, day: date, hours: int, local_hours: list[int]
) -> None:
    features = _hours_of_local_day(site, day)
    assert features.height == hours
    assert features["hour"].to_list() == local_hours
    assert features["day_of_week"].unique().to_list() == [6]  # both 2018 changes on a Sunday
    assert features["is_weekend"].all()
    assert features["day_of_year"].unique().to_list() == [day.timetuple().tm_yday]


def test_local_hour_follows_the_wall_clock_in_summer(site: SiteConfig) -> None:
    frame = pl.DataFrame(
        {"interval_start": [datetime(2018, 7, 2, 11, tzinfo=UTC)]},
        schema={"interval_start": pl.Datetime("us", "UTC")},
    )
    row = add_calendar_features(frame, site=site).row(0, named=True)
    assert row["hour"] == 12  # BST = UTC+1
    assert row["month"] == 7
    assert row["day_of_week"] == 0  # Monday
    # noon local: time of day is half a turn
    assert row["time_of_day_sin"] == pytest.approx(0.0, abs=1e-12)
    assert row["time_of_day_cos"] == pytest.approx(-1.0)


def test_scottish_bank_holidays_and_bridge_days(site: SiteConfig) -> None:
    days = [date(2018, 1, 2), date(2018, 11, 30), date(2018, 4, 2), date(2018, 12, 27)]
    frame = pl.DataFrame(
        {"interval_start": [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d in days]},
        schema={"interval_start": pl.Datetime("us", "UTC")},
    )
    features = add_calendar_features(frame, site=site)
    # 2 January and St Andrew's Day are Scottish holidays; Easter Monday is not (England only)
    assert features["is_holiday"].to_list() == [True, True, False, False]
    assert features["is_bridge_day"].to_list() == [False, False, False, False]
    assert list(features.columns[1:]) == list(CALENDAR_FEATURE_COLUMNS)


def test_bridge_day_between_holiday_and_weekend() -> None:
    # 2019-12-26 is a Thursday (Boxing Day), so Friday 2019-12-27 is a bridge day in England
    england = SiteConfig(
        site_id="london",
        name="London",
        latitude=51.5,
        longitude=-0.1,
        timezone="Europe/London",
        country="GB",
        subdivision="ENG",
    )
    days = [datetime(2019, 12, d, 12, tzinfo=UTC) for d in (24, 25, 26, 27, 30)]
    frame = pl.DataFrame(
        {"interval_start": days}, schema={"interval_start": pl.Datetime("us", "UTC")}
    )
    features = add_calendar_features(frame, site=england)
    assert features["is_holiday"].to_list() == [False, True, True, False, False]
    assert features["is_bridge_day"].to_list() == [False, False, False, True, False]


def test_site_without_country_has_no_holidays(site: SiteConfig) -> None:
    nowhere = site.model_copy(update={"country": None, "subdivision": None})
    assert holiday_dates(nowhere, first=date(2018, 1, 1), last=date(2018, 12, 31)).len() == 0


def test_unknown_country_names_the_site(site: SiteConfig) -> None:
    bad = site.model_copy(update={"country": "XX", "subdivision": None})
    with pytest.raises(ConfigError, match="site 'broxden': holidays unknown for country='XX'"):
        holiday_dates(bad, first=date(2018, 1, 1), last=date(2018, 12, 31))


def test_null_timestamp_names_its_row(site: SiteConfig) -> None:
    frame = pl.DataFrame(
        {"interval_start": [datetime(2018, 6, 1, tzinfo=UTC), None]},
        schema={"interval_start": pl.Datetime("us", "UTC")},
    )
    with pytest.raises(SchemaError, match="interval_start is null in row 1 of 2"):
        add_calendar_features(frame, site=site)


def _zoneinfo_wall_clock(interval_us: np.ndarray, timezone: str) -> np.ndarray:
    """The wall clock by Python's zoneinfo, one instant at a time (the reference)."""
    zone = ZoneInfo(timezone)
    epoch = datetime(1970, 1, 1)
    local = (
        datetime.fromtimestamp(int(us) // 1_000_000, tz=zone).replace(tzinfo=None) - epoch
        for us in interval_us
    )
    return np.array([d // timedelta(microseconds=1) for d in local], dtype=np.int64)


@pytest.mark.parametrize(
    "timezone", ["Europe/London", "America/Los_Angeles", "Australia/Lord_Howe", "Asia/Kathmandu"]
)
@pytest.mark.parametrize("year", [1971, 2017, 2041, 2093])
def test_wall_clock_equals_zoneinfo_across_transitions(timezone: str, year: int) -> None:
    # every hour of three years plus odd seconds: all DST transitions, also after 2037,
    # where zone files that list changes only to 2037 lose daylight-saving time
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    hours = start + np.arange(3 * 366 * 24, dtype=np.int64) * 3_600_000_000
    odd = start + np.random.default_rng(3).integers(0, 3 * 366 * 86_400, 2_000) * 1_000_000
    instants = np.concatenate((hours, odd))
    expected = _zoneinfo_wall_clock(instants, timezone)
    np.testing.assert_array_equal(compute_wall_clock_us(instants, timezone=timezone), expected)


@pytest.mark.parametrize(
    ("timezone", "year"),
    [
        ("Pacific/Apia", 2010),  # skipped 30 December 2011: a change of a whole day
        ("Europe/Moscow", 2010),  # permanent summer time in 2011, back in 2014
        ("America/Caracas", 2006),  # -04:30 from December 2007
        ("Pacific/Chatham", 2017),  # +12:45 / +13:45
    ],
)
def test_wall_clock_equals_zoneinfo_through_unusual_changes(timezone: str, year: int) -> None:
    # every 15 minutes of five years, the day-by-day path and the one-instant path
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    instants = start + np.arange(5 * 366 * 96, dtype=np.int64) * 900_000_000
    expected = _zoneinfo_wall_clock(instants, timezone)
    np.testing.assert_array_equal(compute_wall_clock_us(instants, timezone=timezone), expected)
    few = instants[:: 96 * 30]  # fewer instants than days
    np.testing.assert_array_equal(
        compute_wall_clock_us(few, timezone=timezone), expected[:: 96 * 30]
    )
