from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.demand_series import build_demand_series, build_session_contributions
from features.lags import (
    EWM_HALF_LIVES,
    LAG_FEATURE_COLUMNS,
    LAGS,
    ROLLING_MAXIMA,
    ROLLING_MEANS,
    SiteContributions,
    add_lag_features,
    compute_lag_features,
    compute_site_lag_features,
)
from forecasting.errors import SchemaError
from tests.features.conftest import T0, at, make_sessions

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
# Features are sums of float contributions; corrections are subtracted from cumulative sums of
# at most a few thousand values of <= 120 kWh, so agreement is far better than 1e-6 kWh.
TOLERANCE = 1e-6


def _oracle(
    sessions: pl.DataFrame, *, issued_at: datetime, target: datetime, resolution: timedelta
) -> dict[str, float | None]:
    """Lag features by the definition: rebuild the series from the sessions known at T."""
    known = sessions.filter(pl.col("plug_out_at") < issued_at)
    empty = dict.fromkeys(LAG_FEATURE_COLUMNS)
    if known.is_empty():
        return empty
    series = build_demand_series(known, resolution=resolution)
    values = dict(zip(series["interval_start"], series["energy_kwh"], strict=True))
    history = series["interval_start"].min()
    ended = [j for j in _grid(history, issued_at, resolution) if j + resolution <= issued_at]

    def value(j: datetime) -> float | None:
        ok = history <= j and j + resolution <= issued_at
        return values.get(j, 0.0) if ok else None

    out: dict[str, float | None] = {name: value(target - lag) for name, lag in LAGS.items()}
    for name, window in {**ROLLING_MEANS, **ROLLING_MAXIMA}.items():
        inside = [values.get(j, 0.0) for j in ended if j + resolution > issued_at - window]
        reducer = max if name.startswith("max") else (lambda v: sum(v) / len(v))
        out[name] = reducer(inside) if inside else None
    for name, half_life in EWM_HALF_LIVES.items():
        alpha = 1 - 0.5 ** (1 / (half_life / resolution))
        level = 0.0
        for j in ended:
            level = (1 - alpha) * level + alpha * values.get(j, 0.0)
        out[name] = level
    last = known["plug_out_at"].max()
    out["hours_since_last_session"] = (issued_at - last) / HOUR
    return out


def _grid(first: datetime, until: datetime, step: timedelta) -> list[datetime]:
    count = max(0, math.ceil((until - first) / step))
    return [first + k * step for k in range(count)]


def _features(
    sessions: pl.DataFrame, rows: list[tuple[datetime, datetime]], resolution: timedelta
) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"issued_at": [r[0] for r in rows], "interval_start": [r[1] for r in rows]},
        schema={"issued_at": pl.Datetime("us", "UTC"), "interval_start": pl.Datetime("us", "UTC")},
    )
    contributions = build_session_contributions(sessions, resolution=resolution).collect()
    return add_lag_features(frame, contributions=contributions, resolution=resolution)


def _assert_close(actual: dict[str, float | None], expected: dict[str, float | None]) -> None:
    for name in LAG_FEATURE_COLUMNS:
        a, e = actual[name], expected[name]
        assert (a is None) == (e is None), f"{name}: {a!r} != {e!r}"
        if a is not None and e is not None:
            assert a == pytest.approx(e, abs=TOLERANCE), name


@st.composite
def _case(draw: st.DrawFn) -> tuple[pl.DataFrame, list[tuple[datetime, datetime]], timedelta]:
    resolution = draw(st.sampled_from([QUARTER, HOUR]))
    n = draw(st.integers(0, 14))
    rows = []
    for _ in range(n):
        start = draw(st.integers(0, 10 * 24 * 60))
        duration = draw(st.integers(0, 2 * 24 * 60))
        energy = draw(st.floats(0.0, 120.0, allow_nan=False))
        rows.append(
            (T0 + timedelta(minutes=start), T0 + timedelta(minutes=start + duration), energy)
        )
    issues = draw(st.lists(st.integers(0, 12 * 24 * 60), min_size=1, max_size=3))
    targets = []
    for minute in issues:
        issued_at = T0 + timedelta(minutes=minute)
        step = draw(st.integers(0, 24 * 60 // int(resolution / timedelta(minutes=1))))
        first = T0 + ((issued_at - T0 - timedelta(microseconds=1)) // resolution + 1) * resolution
        targets.append((issued_at, first + step * resolution))
    return make_sessions(rows), targets, resolution


@settings(max_examples=60, deadline=None)
@given(case=_case())
def test_features_equal_the_series_rebuilt_from_sessions_known_at_issue(
    case: tuple[pl.DataFrame, list[tuple[datetime, datetime]], timedelta],
) -> None:
    sessions, rows, resolution = case
    features = _features(sessions, rows, resolution)
    for row in features.iter_rows(named=True):
        expected = _oracle(
            sessions,
            issued_at=row["issued_at"],
            target=row["interval_start"],
            resolution=resolution,
        )
        _assert_close(row, expected)


def test_session_in_flight_at_issue_time_is_not_known() -> None:
    # s0 ended before T; s1 is still plugged in at T (its first hours are in the past)
    sessions = make_sessions([(at(0), at(2), 4.0), (at(20), at(26), 60.0)])
    features = _features(sessions, [(at(24), at(24)), (at(27), at(27))], HOUR)
    before, after = features.to_dicts()
    assert before["mean_24h"] == pytest.approx(4.0 / 24)  # only s0's 4 kWh in [0 h, 24 h)
    assert before["max_24h"] == pytest.approx(2.0)
    assert before["hours_since_last_session"] == pytest.approx(22.0)
    assert after["max_24h"] == pytest.approx(10.0)  # s1 known: 10 kWh per hour
    assert after["lag_1d"] == pytest.approx(0.0)  # hour 3 of T0 had no session


def test_session_ending_exactly_at_issue_time_is_not_known() -> None:
    sessions = make_sessions([(at(22), at(24), 6.0)])
    features = _features(sessions, [(at(24), at(24)), (at(25), at(25))], HOUR)
    assert features["mean_24h"].to_list()[0] is None  # no known session yet: no history
    assert features["mean_24h"].to_list()[1] == pytest.approx(6.0 / 3)  # history from 22 h


def test_lag_not_yet_ended_is_null() -> None:
    sessions = make_sessions([(at(0), at(1), 1.0)])
    features = _features(sessions, [(at(30), at(30) + timedelta(hours=20))], HOUR)
    # the target is 44 h after T0: 1 day earlier is 20 h after T0, already ended by 30 h
    assert features["lag_1d"].item() == pytest.approx(0.0)
    late = _features(sessions, [(at(30), at(30 + 30))], HOUR)
    assert late["lag_1d"].item() is None  # 36 h after T0 had not ended at T = 30 h


def test_nan_energy_gives_null_features_not_nan() -> None:
    # ingest rejects such sessions, but the feature functions take any frame
    sessions = make_sessions([(at(0), at(2), math.nan), (at(3), at(4), 1.0)])
    features = _features(sessions, [(at(24), at(24)), (at(24), at(25))], HOUR)
    for name in ("lag_1d", "mean_24h", "max_24h"):
        assert features[name].is_nan().sum() == 0, name
    assert features["lag_1d"].to_list() == [None, None]  # hours 0 and 1: NaN energy


def test_contributions_in_another_order_give_the_same_features() -> None:
    # s0 is in flight at T = 12 h; sorted by interval start its rows interleave with s1's
    sessions = make_sessions([(at(8), at(14), 600.0), (at(9), at(10), 2.0)])
    contributions = build_session_contributions(sessions, resolution=HOUR).collect()
    frame = pl.DataFrame(
        {"issued_at": [at(12)], "interval_start": [at(12)]},
        schema={"issued_at": pl.Datetime("us", "UTC"), "interval_start": pl.Datetime("us", "UTC")},
    )
    for order in (contributions, contributions.sort("interval_start"), contributions.reverse()):
        features = add_lag_features(frame, contributions=order, resolution=HOUR)
        assert features["max_24h"].item() == pytest.approx(2.0)  # s1 only: s0 is not known
        assert features["mean_24h"].item() == pytest.approx(2.0 / 3)  # history from 9 h


def test_contributions_without_their_arrival_row_are_refused() -> None:
    sessions = make_sessions([(at(8), at(14), 6.0)])
    contributions = build_session_contributions(sessions, resolution=HOUR).collect()
    frame = pl.DataFrame(
        {"issued_at": [at(20)], "interval_start": [at(20)]},
        schema={"issued_at": pl.Datetime("us", "UTC"), "interval_start": pl.Datetime("us", "UTC")},
    )
    with pytest.raises(SchemaError, match=r"session 's0'.*exactly one arrival row"):
        add_lag_features(frame, contributions=contributions.slice(1), resolution=HOUR)


def _site_contributions(sessions: list[pl.DataFrame], resolution: timedelta) -> SiteContributions:
    frames = [build_session_contributions(s, resolution=resolution).collect() for s in sessions]
    parts = pl.concat(
        [f.with_columns(pl.lit(i, dtype=pl.Int64).alias("site")) for i, f in enumerate(frames)]
    )
    return SiteContributions(
        site=parts["site"].to_numpy(),
        start_us=parts["interval_start"].dt.epoch("us").to_numpy(),
        known_us=parts["known_at"].dt.epoch("us").to_numpy(),
        energy=parts["energy_kwh"].to_numpy(),
        arrival=parts["arrivals"].to_numpy() == 1,
    )


@settings(max_examples=30, deadline=None)
@given(first=_case(), second=_case())
def test_many_sites_in_one_pass_equal_one_site_at_a_time(
    first: tuple[pl.DataFrame, list[tuple[datetime, datetime]], timedelta],
    second: tuple[pl.DataFrame, list[tuple[datetime, datetime]], timedelta],
) -> None:
    # site 0 and 1 have their own sessions, site 2 none; all share the rows of `first`
    sessions = [first[0], second[0].slice(1), first[0].clear()]
    rows, resolution = first[1], first[2]
    issued = pl.Series([r[0] for r in rows], dtype=pl.Datetime("us", "UTC"))
    interval = pl.Series([r[1] for r in rows], dtype=pl.Datetime("us", "UTC"))
    issues_us = np.unique(issued.dt.epoch("us").to_numpy())
    issue = np.searchsorted(issues_us, issued.dt.epoch("us").to_numpy())
    together = compute_site_lag_features(
        np.arange(3),
        issue,
        interval.dt.epoch("us").to_numpy(),
        issues_us=issues_us,
        contributions=_site_contributions(sessions, resolution),
        sites=3,
        resolution=resolution,
    )
    for index, site_sessions in enumerate(sessions):
        contributions = build_session_contributions(site_sessions, resolution=resolution)
        alone = compute_lag_features(
            issued, interval, contributions=contributions.collect(), resolution=resolution
        )
        part = slice(index * len(rows), (index + 1) * len(rows))
        for name in LAG_FEATURE_COLUMNS:
            # the same sums in the same order: equal to the last bit, NaN where no value
            np.testing.assert_array_equal(
                together[name][part].to_numpy(), alone[name].to_numpy(), err_msg=name
            )


def test_rows_of_unequal_lengths_are_refused() -> None:
    sessions = make_sessions([(at(1), at(3), 5.0)])
    issues_us = np.array([int(at(24).timestamp()) * 1_000_000])
    with pytest.raises(ValueError, match="one value per row"):
        compute_site_lag_features(
            np.zeros(1, dtype=np.int64),
            np.zeros(3, dtype=np.int64),  # three rows' issues but two rows' intervals
            issues_us[[0, 0]],
            issues_us=issues_us,
            contributions=_site_contributions([sessions], HOUR),
            sites=1,
            resolution=HOUR,
        )
