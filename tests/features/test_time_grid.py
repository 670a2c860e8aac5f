from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from features.time_grid import ONE_US, US_PER_HOUR, check_resolution, compute_epoch_us
from forecasting.errors import ConfigError

NEW_YEAR_2020_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z, from `date -u -d ... +%s`


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(datetime(2020, 1, 1, tzinfo=UTC), NEW_YEAR_2020_US, id="utc"),
        pytest.param(datetime(2020, 1, 1), NEW_YEAR_2020_US, id="naive-is-utc"),
        pytest.param(
            datetime(2020, 1, 1, 1, tzinfo=ZoneInfo("Europe/Oslo")), NEW_YEAR_2020_US, id="oslo"
        ),
        pytest.param(
            datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=UTC), NEW_YEAR_2020_US + 1, id="one-us-later"
        ),
    ],
)
def test_epoch_us_counts_microseconds_since_the_epoch_in_utc(
    value: datetime, expected: int
) -> None:
    assert compute_epoch_us(value) == expected


def test_units() -> None:
    assert timedelta(minutes=15) // ONE_US == 900_000_000
    assert timedelta(hours=1) // ONE_US / US_PER_HOUR == 1.0


@pytest.mark.parametrize(
    "resolution",
    [
        pytest.param(timedelta(minutes=15), id="15min"),
        pytest.param(timedelta(hours=1), id="1h"),
        pytest.param(timedelta(days=1), id="1d"),
    ],
)
def test_resolutions_that_divide_a_day_pass(resolution: timedelta) -> None:
    check_resolution(resolution)


@pytest.mark.parametrize(
    "resolution",
    [
        pytest.param(timedelta(0), id="zero"),
        pytest.param(timedelta(hours=-1), id="negative"),
        pytest.param(timedelta(minutes=7), id="7min"),
        pytest.param(timedelta(hours=25), id="25h"),
    ],
)
def test_other_resolutions_are_rejected(resolution: timedelta) -> None:
    with pytest.raises(ConfigError, match=r"must be positive and divide one day evenly"):
        check_resolution(resolution)
