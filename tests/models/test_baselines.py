from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, ForecastingError, NotFittedError
from forecasting.schemas import SESSIONS_SCHEMA, conform
from models.base import Forecaster
from models.baselines import LagBaseline, Persistence, SeasonalNaive

LONDON = ZoneInfo("Europe/London")
SITE = SiteConfig(site_id="s", name="S", latitude=56.4, longitude=-3.5, timezone="Europe/London")
TOLERANCE = 1e-9  # energies are split exactly at hour boundaries; only float rounding differs


def _sessions(rows: list[tuple[datetime, datetime, float]]) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "site_id": "s",
                "station_id": "st",
                "connector_id": "1",
                "session_id": [f"x{i}" for i in range(len(rows))],
                "plug_in_at": [r[0].astimezone(UTC) for r in rows],
                "plug_out_at": [r[1].astimezone(UTC) for r in rows],
                "energy_kwh": [r[2] for r in rows],
                "source": "test",
                "ingested_at": datetime(2020, 1, 1, tzinfo=UTC),
            }
        ),
        SESSIONS_SCHEMA,
    )


def _daily(first: datetime, days: int, *, energy: list[float] | None = None) -> pl.DataFrame:
    """One 1-hour session a day at the wall-clock time of ``first``."""
    energies = energy or [10.0] * days
    rows = []
    for day in range(days):
        plug_in = first + timedelta(days=day)  # aware datetimes add on the wall clock
        rows.append((plug_in, plug_in + timedelta(hours=1), energies[day]))
    return _sessions(rows)


def _hours(issued_at: datetime, count: int) -> pl.Series:
    return pl.Series("interval_start", [issued_at + timedelta(hours=h) for h in range(count)]).cast(
        pl.Datetime("us", "UTC")
    )


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(SeasonalNaive(), id="seasonal-naive"),
        pytest.param(Persistence(), id="persistence"),
    ],
)
def test_baselines_keep_the_forecaster_protocol(model: LagBaseline) -> None:
    assert isinstance(model, Forecaster)


def test_persistence_repeats_yesterday_as_a_point_forecast_when_history_repeats() -> None:
    sessions = _daily(datetime(2018, 1, 1, 8, tzinfo=UTC), 20)
    issued_at = datetime(2018, 1, 15, tzinfo=UTC)
    model = Persistence().fit(sessions, site=SITE, issued_at=issued_at)
    forecast = model.predict(
        sessions, site=SITE, issued_at=issued_at, interval_starts=_hours(issued_at, 24)
    )
    expected = [10.0 if h == 8 else 0.0 for h in range(24)]
    assert forecast.columns == ["interval_start", "p10", "p50", "p90", "note"]
    assert forecast["p50"].to_list() == pytest.approx(expected, abs=TOLERANCE)
    assert_frame_equal(forecast.select(pl.col("p10").alias("p50")), forecast.select("p50"))
    assert forecast["note"].null_count() == 24


def test_beyond_one_lag_the_latest_known_same_time_value_is_used_and_noted() -> None:
    sessions = _daily(datetime(2018, 1, 1, 8, tzinfo=UTC), 20)
    issued_at = datetime(2018, 1, 15, tzinfo=UTC)
    model = Persistence().fit(sessions, site=SITE, issued_at=issued_at)
    forecast = model.predict(
        sessions, site=SITE, issued_at=issued_at, interval_starts=_hours(issued_at, 48)
    )
    assert forecast["p50"][8] == forecast["p50"][32] == pytest.approx(10.0, abs=TOLERANCE)
    assert forecast["note"][:24].null_count() == 24
    assert forecast["note"][24:].str.contains("2 lags back").all()


def test_sessions_not_ended_at_the_issue_time_are_ignored() -> None:
    sessions = _daily(datetime(2018, 1, 1, 8, tzinfo=UTC), 20)
    issued_at = datetime(2018, 1, 15, 8, 30, tzinfo=UTC)  # the 15th's session is plugged in
    starts = _hours(datetime(2018, 1, 15, 9, tzinfo=UTC), 24)
    known = sessions.filter(pl.col("plug_out_at") < issued_at)
    with_future = (
        Persistence()
        .fit(sessions, site=SITE, issued_at=issued_at)
        .predict(sessions, site=SITE, issued_at=issued_at, interval_starts=starts)
    )
    without = (
        Persistence()
        .fit(known, site=SITE, issued_at=issued_at)
        .predict(known, site=SITE, issued_at=issued_at, interval_starts=starts)
    )
    assert_frame_equal(with_future, without)
    # 08:00 on the 15th was not known at 08:30 (its session was still plugged in): two lags back
    assert with_future["p50"][-1] == pytest.approx(10.0, abs=TOLERANCE)
    assert "2 lags back" in with_future["note"][-1]


def test_seasonal_naive_lags_by_local_wall_clock_across_dst() -> None:
    # a session every day 08:00-09:00 London time; British Summer Time starts on 2018-03-25
    sessions = _daily(datetime(2018, 3, 1, 8, tzinfo=LONDON), 25)
    issued_at = datetime(2018, 3, 26, tzinfo=LONDON).astimezone(UTC)
    model = SeasonalNaive().fit(sessions, site=SITE, issued_at=issued_at)
    forecast = model.predict(
        sessions, site=SITE, issued_at=issued_at, interval_starts=_hours(issued_at, 24)
    )
    local_hour = forecast["interval_start"].dt.convert_time_zone("Europe/London").dt.hour()
    by_hour = dict(zip(local_hour.to_list(), forecast["p50"].to_list(), strict=True))
    assert by_hour[8] == pytest.approx(10.0, abs=TOLERANCE)  # a week earlier 08:00 GMT
    assert by_hour[7] == pytest.approx(0.0, abs=TOLERANCE)


def test_the_spread_comes_from_past_errors_and_stays_ordered() -> None:
    rng = np.random.default_rng(3)
    energies = rng.uniform(2.0, 30.0, 60).tolist()
    sessions = _daily(datetime(2018, 1, 1, 8, tzinfo=UTC), 60, energy=energies)
    issued_at = datetime(2018, 2, 20, tzinfo=UTC)
    model = SeasonalNaive().fit(sessions, site=SITE, issued_at=issued_at)
    forecast = model.predict(
        sessions, site=SITE, issued_at=issued_at, interval_starts=_hours(issued_at, 24)
    )
    assert (forecast["p10"] >= 0).all()
    assert ((forecast["p10"] <= forecast["p50"]) & (forecast["p50"] <= forecast["p90"])).all()
    eight = forecast.filter(pl.col("interval_start").dt.hour() == 8).row(0, named=True)
    assert eight["p90"] - eight["p10"] > 5.0  # weekly changes of uniform(2, 30) kWh are wide
    quiet = forecast.filter(pl.col("interval_start").dt.hour() == 3)
    assert quiet["p90"].item() == pytest.approx(0.0, abs=TOLERANCE)  # never a session at 03:00


def test_predict_before_fit_is_refused() -> None:
    issued_at = datetime(2018, 1, 15, tzinfo=UTC)
    with pytest.raises(NotFittedError, match="call fit before predict"):
        Persistence().predict(
            _daily(datetime(2018, 1, 1, 8, tzinfo=UTC), 3),
            site=SITE,
            issued_at=issued_at,
            interval_starts=_hours(issued_at, 2),
        )


def test_without_known_sessions_there_is_no_baseline() -> None:
    sessions = _daily(datetime(2018, 1, 20, 8, tzinfo=UTC), 3)
    with pytest.raises(ForecastingError, match="no session of site 's' ended before"):
        SeasonalNaive().fit(sessions, site=SITE, issued_at=datetime(2018, 1, 15, tzinfo=UTC))


def test_a_lag_of_less_than_a_day_is_refused() -> None:
    with pytest.raises(ConfigError, match="lag of at least one day"):
        LagBaseline(name="x", lag_days=0)
