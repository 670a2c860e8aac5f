from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from features.weather import WEATHER_FEATURE_COLUMNS, add_weather_features
from forecasting.errors import SchemaError
from forecasting.schemas import WEATHER_SCHEMA, conform
from tests.features.conftest import at

HOUR = timedelta(hours=1)


def _weather(rows: list[tuple[str, datetime | None, datetime, float]]) -> pl.DataFrame:
    """Weather rows (kind, issued_at, interval_start, temp_air); other values derived."""
    frame = pl.DataFrame(
        {
            "site_id": ["broxden"] * len(rows),
            "kind": [r[0] for r in rows],
            "issued_at": [r[1] for r in rows],
            "interval_start": [r[2] for r in rows],
            "temp_air": [r[3] for r in rows],
            "ghi": [10.0 * r[3] for r in rows],
            "dni": [0.0] * len(rows),
            "dhi": [0.0] * len(rows),
            "wind_speed": [1.0] * len(rows),
            "flags": [[] for _ in rows],
            "source": ["test"] * len(rows),
            "ingested_at": [at(0)] * len(rows),
        },
        schema_overrides={
            "issued_at": pl.Datetime("us", "UTC"),
            "interval_start": pl.Datetime("us", "UTC"),
            "ingested_at": pl.Datetime("us", "UTC"),
            "flags": pl.List(pl.String),
        },
    )
    return conform(frame, WEATHER_SCHEMA)


def _targets(rows: list[tuple[datetime, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"issued_at": [r[0] for r in rows], "interval_start": [r[1] for r in rows]},
        schema={"issued_at": pl.Datetime("us", "UTC"), "interval_start": pl.Datetime("us", "UTC")},
    )


WEATHER = _weather(
    [
        ("forecast", at(0), at(12), 5.0),
        ("forecast", at(6), at(12), 6.0),
        ("forecast", at(10), at(12), 7.0),  # issued exactly at the second issue time
        ("observation", None, at(12), 9.0),
        ("observation", None, at(13), 8.0),
    ]
)


def test_latest_forecast_issued_strictly_before_issue_time() -> None:
    targets = _targets([(at(10), at(12)), (at(11), at(12)), (at(6), at(12)), (at(0), at(12))])
    features = add_weather_features(targets, weather=WEATHER, resolution=HOUR)
    assert features["temp_air"].to_list() == [6.0, 7.0, 5.0, None]
    assert features["weather_lead_h"].to_list() == [6.0, 2.0, 12.0, None]
    assert not features["weather_is_observation"].any()
    assert list(features.columns[2:]) == list(WEATHER_FEATURE_COLUMNS)


def test_observations_stand_in_only_when_asked_and_marked() -> None:
    targets = _targets([(at(0), at(12)), (at(0), at(13)), (at(8), at(12))])
    features = add_weather_features(
        targets, weather=WEATHER, resolution=HOUR, observations_stand_in=True
    )
    assert features["temp_air"].to_list() == [9.0, 8.0, 6.0]
    assert features["weather_is_observation"].to_list() == [True, True, False]
    without = add_weather_features(targets, weather=WEATHER, resolution=HOUR)
    assert without["temp_air"].to_list() == [None, None, 6.0]


def test_changing_weather_not_issued_before_issue_time_changes_nothing() -> None:
    targets = _targets([(at(10), at(12)), (at(10), at(13))])
    before = add_weather_features(targets, weather=WEATHER, resolution=HOUR)
    later = pl.concat(
        [
            WEATHER.filter((pl.col("issued_at") < at(10)) | pl.col("issued_at").is_null()),
            _weather([("forecast", at(10), at(12), 40.0), ("forecast", at(11), at(13), 41.0)]),
        ]
    ).with_columns(
        pl.when(pl.col("kind") == "observation")
        .then(99.0)
        .otherwise(pl.col("temp_air"))
        .alias("temp_air")
    )
    after = add_weather_features(targets, weather=later, resolution=HOUR)
    assert before.equals(after)


def test_finer_weather_is_averaged_onto_the_grid() -> None:
    weather = _weather(
        [
            ("forecast", at(0), at(12), 4.0),
            ("forecast", at(0), at(12.5), 6.0),
        ]
    )
    features = add_weather_features(_targets([(at(1), at(12))]), weather=weather, resolution=HOUR)
    assert features["temp_air"].item() == pytest.approx(5.0)


def test_coarser_weather_covers_every_target_interval() -> None:
    weather = _weather([("forecast", at(0), at(12), 4.0), ("forecast", at(0), at(15), 7.0)])
    targets = _targets([(at(1), at(12)), (at(1), at(12.25)), (at(1), at(14.75))])
    features = add_weather_features(
        targets,
        weather=weather,
        resolution=timedelta(minutes=15),
        weather_resolution=timedelta(hours=3),
    )
    assert features["temp_air"].to_list() == [4.0, 4.0, 4.0]


def test_weather_without_key_columns_is_rejected() -> None:
    with pytest.raises(SchemaError, match=r"weather frame is missing columns \['kind'\]"):
        add_weather_features(
            _targets([(at(1), at(12))]), weather=WEATHER.drop("kind"), resolution=HOUR
        )


def test_a_finer_later_forecast_run_does_not_change_matching() -> None:
    # hourly forecasts known at T; a later 15-minute run must not change how rows are matched
    known = _weather([("forecast", at(0), at(12), 4.0), ("forecast", at(0), at(13), 6.0)])
    later = _weather([("forecast", at(11), at(12), 9.0), ("forecast", at(11), at(12.25), 9.0)])
    targets = _targets([(at(10), at(12.25)), (at(10), at(13.5))])
    quarter = timedelta(minutes=15)
    before = add_weather_features(targets, weather=known, resolution=quarter)
    after = add_weather_features(targets, weather=pl.concat([known, later]), resolution=quarter)
    assert before["temp_air"].to_list() == [4.0, 6.0]
    assert before.equals(after)
