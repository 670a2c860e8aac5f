from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from features.matrix import (
    KEY_COLUMNS,
    TARGET_COLUMNS,
    build_feature_matrices,
    build_feature_matrix,
    compute_target_rows,
    feature_columns,
)
from features.solar_geometry import SOLAR_FEATURE_COLUMNS
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, SchemaError
from forecasting.schemas import WEATHER_SCHEMA, conform
from tests.features.conftest import T0, at, make_sessions

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Features of the same row built from different session sets differ only by float rounding of
# cumulative sums (see test_lags); 1e-6 kWh is far above that and far below any real change.
TOLERANCE = 1e-6


def _weather(rows: list[tuple[str, datetime | None, datetime, float]]) -> pl.DataFrame:
    n = len(rows)
    frame = pl.DataFrame(
        {
            "site_id": ["broxden"] * n,
            "kind": [r[0] for r in rows],
            "issued_at": [r[1] for r in rows],
            "interval_start": [r[2] for r in rows],
            "temp_air": [r[3] for r in rows],
            "ghi": [r[3] * 10 for r in rows],
            "dni": [0.0] * n,
            "dhi": [0.0] * n,
            "wind_speed": [2.0] * n,
            "flags": [[] for _ in rows],
            "source": ["test"] * n,
            "ingested_at": [T0] * n,
        },
        schema_overrides={
            "issued_at": pl.Datetime("us", "UTC"),
            "interval_start": pl.Datetime("us", "UTC"),
            "ingested_at": pl.Datetime("us", "UTC"),
            "flags": pl.List(pl.String),
        },
    )
    return conform(frame, WEATHER_SCHEMA)


def _daily_sessions(days: int) -> pl.DataFrame:
    rows = []
    for d in range(days):
        for hour, hours, energy in ((8, 1.5, 12.0), (13, 0.5, 8.0), (18, 3.0, 20.0)):
            start = d * 24 + hour + (d % 3) * 0.25
            rows.append((at(start), at(start + hours), energy + d % 5))
    return make_sessions(rows)


def _features(matrix: pl.DataFrame) -> pl.DataFrame:
    return matrix.select(*KEY_COLUMNS[1:3], *feature_columns()[1:])


def test_layout_one_row_per_issue_and_step(site: SiteConfig) -> None:
    issues = [at(24 * 10), at(24 * 11), at(24 * 10)]  # duplicates dropped
    matrix = build_feature_matrix(
        _daily_sessions(14), site=site, issue_times=issues, horizon=DAY, resolution=HOUR
    )
    assert matrix.columns == [*KEY_COLUMNS, *TARGET_COLUMNS, *feature_columns()[1:]]
    assert matrix.height == 2 * 24
    assert matrix["step"].to_list() == list(range(24)) * 2
    first = matrix.row(0, named=True)
    assert first["interval_start"] == first["issued_at"] == at(240)
    with_solar = build_feature_matrix(
        _daily_sessions(14),
        site=site,
        issue_times=issues,
        horizon=DAY,
        resolution=HOUR,
        solar_geometry=True,
    )
    assert with_solar.columns == [
        *KEY_COLUMNS,
        *TARGET_COLUMNS,
        *feature_columns(with_solar=True)[1:],
    ]
    assert with_solar.drop(SOLAR_FEATURE_COLUMNS).equals(matrix)


def test_training_rows_equal_prediction_rows(site: SiteConfig) -> None:
    sessions = _daily_sessions(20)
    issues = [at(24 * d + h) for d in (8, 12, 15) for h in (0, 9.5)]
    training = build_feature_matrix(
        sessions, site=site, issue_times=issues, horizon=DAY, resolution=HOUR
    )
    for issued_at in issues:
        known = sessions.filter(pl.col("plug_out_at") < issued_at)
        serving = build_feature_matrix(
            known, site=site, issue_times=[issued_at], horizon=DAY, resolution=HOUR
        )
        assert serving["energy_kwh"].is_null().all()  # the future is unknown when serving
        assert_frame_equal(
            _features(training.filter(pl.col("issued_at") == issued_at)),
            _features(serving),
            abs_tol=TOLERANCE,
        )


@pytest.mark.parametrize("allocation", ["uniform", "front_loaded"])
def test_many_sites_in_one_call_equal_one_site_at_a_time(site: SiteConfig, allocation: str) -> None:
    other = site.model_copy(
        update={"site_id": "oslo", "timezone": "Europe/Oslo", "country": "NO", "subdivision": None}
    )
    sessions = pl.concat(
        [
            _daily_sessions(12),
            _daily_sessions(9).with_columns(pl.lit("oslo").alias("site_id")),
        ]
    )
    common = {
        "issue_times": [at(24 * 9), at(24 * 10 + 6)],
        "horizon": DAY,
        "resolution": HOUR,
        "allocation": allocation,
    }
    together = build_feature_matrices(sessions, sites=[site, other], **common)
    one_by_one = pl.concat(
        [build_feature_matrix(sessions, site=s, **common) for s in (site, other)]
    )
    assert_frame_equal(together, one_by_one)
    assert together["site_id"].unique(maintain_order=True).to_list() == ["broxden", "oslo"]


def test_targets_are_the_full_series_and_null_when_unknown_or_missing(site: SiteConfig) -> None:
    sessions = make_sessions([(at(1), at(3), 10.0), (at(30), at(31), 4.0)])
    matrix = build_feature_matrix(
        sessions, site=site, issue_times=[at(0)], horizon=DAY, resolution=HOUR
    )
    # s0 is unknown at T = 0 h, but the target is the truth: 5 kWh in each of hours 1 and 2
    assert matrix["energy_kwh"].to_list()[:4] == [0.0, 5.0, 5.0, 0.0]
    cut = build_feature_matrix(
        sessions,
        site=site,
        issue_times=[at(0)],
        horizon=DAY,
        resolution=HOUR,
        known_until=at(2),
    )
    assert cut["energy_kwh"].to_list()[:3] == [0.0, 5.0, None]


def test_outage_intervals_have_null_targets(site: SiteConfig) -> None:
    rows = [(at(h), at(h + 0.5), 5.0) for h in range(0, 24 * 40) if not 24 * 35 <= h < 24 * 38]
    matrix = build_feature_matrix(
        make_sessions(rows), site=site, issue_times=[at(24 * 36)], horizon=DAY, resolution=HOUR
    )
    assert matrix["is_missing"].all()
    assert matrix["energy_kwh"].is_null().all()
    # the features do not know about the outage, only that the site has been silent for a day
    assert matrix["hours_since_last_session"].unique().to_list() == [pytest.approx(24.5)]


@pytest.mark.parametrize(
    ("local_midnight", "hours", "local_hours"),
    [
        pytest.param(datetime(2018, 3, 25, 0, tzinfo=UTC), 23, [0, *range(2, 24)], id="spring"),
        pytest.param(
            datetime(2018, 10, 27, 23, tzinfo=UTC), 25, [0, 1, 1, *range(2, 24)], id="autumn"
        ),
    ],
)
def test_a_local_day_across_dst_changes(
    site: SiteConfig, local_midnight: datetime, hours: int, local_hours: list[int]
) -> None:
    sessions = make_sessions([(local_midnight - 3 * DAY, local_midnight - 2 * DAY, 5.0)])
    matrix = build_feature_matrix(
        sessions,
        site=site,
        issue_times=[local_midnight],
        horizon=timedelta(hours=hours),
        resolution=HOUR,
    )
    assert matrix.height == hours  # the Europe/London day has 23 or 25 hours
    assert matrix["hour"].to_list() == local_hours
    assert matrix["day_of_week"].unique().to_list() == [6]  # both changes on a Sunday
    assert matrix["is_weekend"].all()
    # a day before the 25th hour is the issue hour itself: not ended at issue time, so unknown
    expected_lag = [pytest.approx(0.0)] * min(hours, 24) + [None] * (hours - 24)
    assert matrix["lag_1d"].to_list() == expected_lag


@pytest.mark.parametrize(
    ("issue_times", "error", "match"),
    [
        pytest.param([datetime(2018, 3, 1)], SchemaError, "timezone-aware", id="naive"),
        pytest.param([at(0)], ConfigError, "horizon", id="zero-horizon"),
    ],
)
def test_bad_arguments_are_rejected(
    site: SiteConfig, issue_times: list[datetime], error: type[Exception], match: str
) -> None:
    horizon = timedelta(0) if match == "horizon" else DAY
    with pytest.raises(error, match=match):
        build_feature_matrix(
            _daily_sessions(2),
            site=site,
            issue_times=issue_times,
            horizon=horizon,
            resolution=HOUR,
        )


@st.composite
def _leakage_case(draw: st.DrawFn) -> dict[str, object]:
    minutes = st.integers(0, 10 * 24 * 60)
    n = draw(st.integers(1, 14))
    rows = []
    for _ in range(n):
        start = draw(minutes)
        end = start + draw(st.integers(0, 36 * 60))
        rows.append(
            (T0 + timedelta(minutes=start), T0 + timedelta(minutes=end), draw(st.floats(0, 90)))
        )
    issued_at = T0 + timedelta(minutes=draw(minutes))
    weather = []
    for _ in range(draw(st.integers(0, 8))):
        issued = T0 + timedelta(hours=draw(st.integers(0, 11 * 24)))
        target = issued + timedelta(hours=draw(st.integers(0, 36)))
        weather.append(("forecast", issued, target, draw(st.floats(-10, 30))))
    return {
        "sessions": make_sessions(rows),
        "issued_at": issued_at,
        "weather": weather,
        "resolution": draw(st.sampled_from([timedelta(minutes=15), HOUR])),
        "allocation": draw(st.sampled_from(["uniform", "front_loaded"])),
        "edit": draw(st.sampled_from(["delete", "energy", "plug_in", "add"])),
        "value": draw(st.floats(0.0, 200.0)),
    }


def _edit_unknown(
    sessions: pl.DataFrame, *, issued_at: datetime, edit: str, value: float
) -> pl.DataFrame:
    unknown = pl.col("plug_out_at") >= issued_at
    if edit == "delete":
        return sessions.filter(~unknown)
    if edit == "energy":
        return sessions.with_columns(
            pl.when(unknown).then(value).otherwise(pl.col("energy_kwh")).alias("energy_kwh")
        )
    if edit == "plug_in":
        earlier = pl.col("plug_in_at") - timedelta(minutes=int(value))
        return sessions.with_columns(
            pl.when(unknown).then(earlier).otherwise(pl.col("plug_in_at")).alias("plug_in_at")
        )
    extra = make_sessions([(issued_at - timedelta(hours=value / 10), issued_at, value)])
    return pl.concat([sessions, extra.with_columns(pl.lit("extra").alias("session_id"))])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_leakage_case())
def test_data_unknown_at_issue_time_changes_no_feature(site: SiteConfig, case: dict) -> None:
    issued_at = case["issued_at"]
    weather = _weather(case["weather"])
    common = {
        "site": site,
        "issue_times": [issued_at],
        "horizon": DAY,
        "resolution": case["resolution"],
        "allocation": case["allocation"],
    }
    before = build_feature_matrix(case["sessions"], weather=weather, **common)
    edited = _edit_unknown(
        case["sessions"], issued_at=issued_at, edit=case["edit"], value=case["value"]
    )
    future_weather = pl.concat(
        [
            weather.filter(pl.col("issued_at") < issued_at),
            _weather([("forecast", issued_at, issued_at + HOUR, 99.0)]),
            _weather([("observation", None, issued_at, 99.0)]),
        ]
    )
    after = build_feature_matrix(edited, weather=future_weather, **common)
    columns = [*KEY_COLUMNS, *feature_columns(with_weather=True)[1:]]
    assert_frame_equal(before.select(columns), after.select(columns), abs_tol=TOLERANCE)


def test_last_known_plug_out_survives_the_trim_of_early_sessions(site: SiteConfig) -> None:
    # the latest session ends exactly at T (unknown at T); the one before it ended 100 days
    # earlier, so long before the lookback that it is summarised, not split
    issued = datetime(2018, 6, 1, tzinfo=UTC)
    sessions = make_sessions(
        [
            (issued - 200 * DAY, issued - 199 * DAY, 5.0),
            (issued - 100 * DAY, issued - 100 * DAY + HOUR, 3.0),
            (issued - 2 * HOUR, issued, 4.0),
        ]
    )
    matrix = build_feature_matrix(
        sessions, site=site, issue_times=[issued], horizon=2 * HOUR, resolution=HOUR
    )
    expected = (100 * DAY - HOUR) / HOUR  # since the plug-out of the 3 kWh session [h]
    assert matrix["hours_since_last_session"].to_list() == [expected, expected]


@pytest.mark.parametrize(
    ("horizon", "issue", "interval", "step"),
    [
        # 00:00 -> 00:00 and 01:00; 00:30 -> 01:00 and 02:00 (starts at or after the issue)
        pytest.param(timedelta(hours=2), [0, 0, 1, 1], [0, 1, 1, 2], [0, 1, 0, 1], id="2h"),
        # 30 minutes: 00:00 -> 00:00; 00:30 has no grid interval starting before 01:00
        pytest.param(timedelta(minutes=30), [0], [0], [0], id="no-rows-for-00:30"),
    ],
)
def test_target_rows_start_at_or_after_the_issue_within_the_horizon(
    horizon: timedelta, issue: list[int], interval: list[int], step: list[int]
) -> None:
    hour = 3_600_000_000
    issues_us = np.array([0, hour // 2]) + 400_000 * hour
    rows = compute_target_rows(issues_us, horizon=horizon, resolution=timedelta(hours=1))
    assert rows[0].tolist() == issue
    assert ((rows[1] - 400_000 * hour) // hour).tolist() == interval
    assert rows[2].tolist() == step
