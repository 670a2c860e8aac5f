from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.demand_series import (
    build_demand_series,
    build_series_from_contributions,
    build_session_contributions,
)
from forecasting.errors import ConfigError, SchemaError
from forecasting.schemas import DEMAND_SERIES_SCHEMA, validate_frame
from tests.features.conftest import T0, at, make_sessions

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)


def _grid(start: datetime, values: list[float], *, step: timedelta = HOUR) -> list[datetime]:
    return [start + k * step for k in range(len(values))]


def test_uniform_split_exactly_at_interval_boundaries() -> None:
    sessions = make_sessions([(at(0.5), at(2.5), 20.0), (at(5), at(5), 3.0)])
    series = build_demand_series(sessions, resolution=HOUR)
    energy = [5.0, 10.0, 5.0, 0.0, 0.0, 3.0]
    expected = pl.DataFrame(
        {
            "site_id": ["broxden"] * 6,
            "interval_start": _grid(T0, energy),
            "energy_kwh": energy,
            "power_kw": energy,
            "occupied_connectors": [0.5, 1.0, 0.5, 0.0, 0.0, 0.0],
            "arrivals": [1, 0, 0, 0, 0, 1],
            "is_missing": [False] * 6,
        },
        schema=DEMAND_SERIES_SCHEMA,
    )
    assert_frame_equal(series, expected)


def test_power_is_energy_over_interval_hours_at_15_minutes() -> None:
    sessions = make_sessions([(at(0), at(0.5), 11.0)])
    series = build_demand_series(sessions, resolution=QUARTER)
    assert series["energy_kwh"].to_list() == [5.5, 5.5]
    assert series["power_kw"].to_list() == [22.0, 22.0]


@pytest.mark.parametrize(
    ("max_power_kw", "done", "expected"),
    [
        pytest.param(4.0, None, [4.0, 4.0, 0.0, 0.0], id="rated-power-from-session"),
        pytest.param(None, None, [8.0, 0.0, 0.0, 0.0], id="site-charger-power"),
        pytest.param(1.0, None, [2.0, 2.0, 2.0, 2.0], id="energy-over-duration-floor"),
        pytest.param(4.0, at(1), [8.0, 0.0, 0.0, 0.0], id="charging-done-known"),
    ],
)
def test_front_loaded_allocation(
    max_power_kw: float | None, done: datetime | None, expected: list[float]
) -> None:
    sessions = make_sessions(
        [(at(0), at(4), 8.0)], max_power_kw=[max_power_kw], charging_done_at=[done]
    )
    series = build_demand_series(
        sessions, resolution=HOUR, allocation="front_loaded", charger_power_kw=50.0
    )
    assert series["energy_kwh"].to_list() == pytest.approx(expected, abs=1e-9)
    # occupancy follows the plug-in window whatever the allocation
    assert series["occupied_connectors"].to_list() == [1.0, 1.0, 1.0, 1.0]


@st.composite
def _random_sessions(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 15))
    rows = []
    for _ in range(n):
        start = draw(st.integers(0, 7 * 24 * 60))
        duration = draw(st.integers(0, 3 * 24 * 60))
        energy = draw(st.floats(0.0, 120.0, allow_nan=False))
        rows.append(
            (T0 + timedelta(minutes=start), T0 + timedelta(minutes=start + duration), energy)
        )
    powers = draw(st.lists(st.one_of(st.none(), st.floats(1.0, 350.0)), min_size=n, max_size=n))
    return make_sessions(rows, max_power_kw=powers)


@settings(max_examples=40, deadline=None)
@given(
    sessions=_random_sessions(),
    resolution=st.sampled_from([QUARTER, HOUR]),
    allocation=st.sampled_from(["uniform", "front_loaded"]),
)
def test_energy_is_conserved(
    sessions: pl.DataFrame, resolution: timedelta, allocation: str
) -> None:
    series = build_demand_series(
        sessions, resolution=resolution, allocation=allocation, charger_power_kw=22.0
    )
    validate_frame(series, DEMAND_SERIES_SCHEMA, name="demand series")
    # float tolerance: per-interval shares are float divisions, summed over up to ~300 intervals
    assert series["energy_kwh"].sum() == pytest.approx(sessions["energy_kwh"].sum(), abs=1e-7)
    assert series["arrivals"].sum() == sessions.height
    grid_steps = series["interval_start"].diff().drop_nulls().unique().to_list()
    assert grid_steps in ([], [resolution])


def test_grid_is_complete_per_site_with_zeros() -> None:
    a = make_sessions([(at(0), at(1), 1.0), (at(5), at(6), 2.0)], site_id="a")
    b = make_sessions([(at(2), at(3), 4.0)], site_id="b")
    series = build_demand_series(pl.concat([a, b]), resolution=HOUR)
    counts = dict(series.group_by("site_id").len().iter_rows())
    assert counts == {"a": 6, "b": 1}
    assert series.filter(pl.col("site_id") == "a")["energy_kwh"].to_list() == [
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        2.0,
    ]


def test_start_and_end_bound_the_grid() -> None:
    sessions = make_sessions([(at(1), at(3), 4.0)])
    series = build_demand_series(sessions, resolution=HOUR, start=at(-1), end=at(2))
    assert series["interval_start"].to_list() == [at(-1), at(0), at(1)]
    assert series["energy_kwh"].to_list() == [0.0, 0.0, 2.0]


def test_series_from_contributions_equals_the_series_from_sessions() -> None:
    a = make_sessions([(at(0.5), at(3.25), 6.0), (at(7), at(7.5), 1.0)], site_id="a")
    b = make_sessions([(at(2), at(2.25), 4.0)], site_id="b")
    sessions = pl.concat([b, a])
    contributions = build_session_contributions(sessions, resolution=HOUR).collect()
    assert_frame_equal(
        build_series_from_contributions(contributions, resolution=HOUR),
        build_demand_series(sessions, resolution=HOUR),
    )


def test_contributions_off_the_grid_count_from_the_first_one() -> None:
    contributions = pl.DataFrame(
        {
            "site_id": ["a", "a", "a"],
            "interval_start": [at(0.5), at(1.25), at(1.75)],  # off the hourly grid
            "energy_kwh": [1.0, 2.0, 4.0],
            "occupied_connectors": [1.0, 1.0, 0.5],
            "arrivals": [1, 0, 1],
        }
    )
    series = build_series_from_contributions(contributions, resolution=HOUR)
    # hours from 00:30 up to one hour after the last start
    assert series["interval_start"].to_list() == [at(0.5), at(1.5), at(2.5)]
    assert series["energy_kwh"].to_list() == [3.0, 4.0, 0.0]
    assert series["arrivals"].to_list() == [1, 1, 0]


def test_contributions_carry_known_at() -> None:
    sessions = make_sessions([(at(0.5), at(1.5), 2.0)])
    contributions = build_session_contributions(sessions, resolution=HOUR).collect()
    assert contributions["known_at"].to_list() == [at(1.5), at(1.5)]
    assert contributions["energy_kwh"].to_list() == [1.0, 1.0]


@pytest.mark.parametrize(
    "resolution",
    [
        pytest.param(timedelta(minutes=7), id="does-not-divide-a-day"),
        pytest.param(timedelta(0), id="zero"),
    ],
)
def test_bad_resolution_is_rejected(resolution: timedelta) -> None:
    with pytest.raises(ConfigError, match="divide one day"):
        build_demand_series(make_sessions([(at(0), at(1), 1.0)]), resolution=resolution)


def test_session_ending_before_it_starts_is_rejected() -> None:
    sessions = make_sessions([(at(2), at(1), 1.0)])
    with pytest.raises(SchemaError, match="'s0' of site 'broxden' ends before it starts"):
        build_demand_series(sessions, resolution=HOUR)
