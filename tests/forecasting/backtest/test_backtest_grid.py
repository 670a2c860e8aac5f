from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest

from forecasting.backtest.contract import GRID_SCHEMA
from forecasting.backtest.grid import (
    BacktestSpec,
    assign_refit_blocks,
    build_grid,
    build_issue_times,
)
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        pytest.param(date(2018, 3, 24), 24, id="ordinary-day"),
        pytest.param(date(2018, 3, 25), 23, id="spring-forward-23h"),
        pytest.param(date(2018, 10, 28), 25, id="fall-back-25h"),
    ],
)
def test_a_24h_horizon_from_midnight_covers_the_local_day(
    london_site: SiteConfig, day: date, hours: int
) -> None:
    spec = BacktestSpec(start=day, end=day)
    grid = build_grid(site=london_site, spec=spec)
    assert grid.height == hours
    assert grid.schema == pl.Schema(GRID_SCHEMA)
    local = grid["interval_start"].dt.convert_time_zone("Europe/London")
    assert local.dt.date().unique().to_list() == [day]
    assert local.dt.hour().min() == 0
    assert local.dt.hour().max() == 23


def test_issue_times_are_local_wall_clock_in_utc(london_site: SiteConfig) -> None:
    spec = BacktestSpec(start=date(2018, 7, 1), end=date(2018, 7, 2), issue_time=time(6, 0))
    assert build_issue_times(site=london_site, spec=spec) == [
        datetime(2018, 7, 1, 5, tzinfo=UTC),  # 06:00 BST
        datetime(2018, 7, 2, 5, tzinfo=UTC),
    ]


def test_intervals_start_at_the_first_boundary_after_an_unaligned_issue(
    london_site: SiteConfig,
) -> None:
    spec = BacktestSpec(
        start=date(2018, 1, 10),
        end=date(2018, 1, 10),
        issue_time=time(0, 30),
        horizon=timedelta(hours=3),
    )
    grid = build_grid(site=london_site, spec=spec)
    assert grid["interval_start"].to_list() == [
        datetime(2018, 1, 10, h, tzinfo=UTC) for h in (1, 2, 3)
    ]
    assert (grid["issued_at"] <= grid["interval_start"]).all()


@pytest.mark.parametrize(
    ("refit_days", "expected"),
    [
        pytest.param(7, [0] * 7 + [1] * 7 + [2], id="weekly"),
        pytest.param(1, list(range(15)), id="daily"),
        pytest.param(30, [0] * 15, id="longer-than-the-window"),
    ],
)
def test_refit_blocks_follow_the_cadence(refit_days: int, expected: list[int]) -> None:
    issues = [datetime(2019, 6, 1, tzinfo=UTC) + timedelta(days=d) for d in range(15)]
    assert assign_refit_blocks(issues, refit_every=timedelta(days=refit_days)) == expected


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"end": date(2019, 5, 31)}, "end is before start", id="end-before-start"),
        pytest.param({"resolution": timedelta(minutes=7)}, "divide a day", id="odd-resolution"),
        pytest.param({"horizon": timedelta(minutes=30)}, "horizon", id="horizon-too-short"),
        pytest.param({"refit_every": timedelta(0)}, "refit_every", id="no-refit-cadence"),
    ],
)
def test_an_invalid_spec_is_refused(changes: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"start": date(2019, 6, 1), "end": date(2019, 6, 2), **changes}
    with pytest.raises(ConfigError, match=match):
        BacktestSpec(**arguments)  # type: ignore[arg-type]
