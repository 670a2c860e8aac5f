from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Self

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting.backtest.contract import ACTUALS_SCHEMA
from forecasting.backtest.engine import run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.models import build_factories
from forecasting.config import SiteConfig
from forecasting.errors import ForecastingError, SchemaError
from forecasting.schemas import FORECAST_KEY, FORECAST_SCHEMA
from models.baselines import SeasonalNaive
from models.demand_config import DemandConfig, LightGBMParams
from tests.support import FlatForecaster

DATA_START = datetime(2019, 5, 1, tzinfo=UTC)
SPEC = BacktestSpec(
    start=date(2019, 6, 1), end=date(2019, 6, 7), refit_every=timedelta(days=3)
)  # blocks start on June 1, 4 and 7 (local midnight, 23:00 UTC the day before)
LEAK_SPEC = BacktestSpec(
    start=date(2019, 6, 3), end=date(2019, 6, 6), refit_every=timedelta(days=2)
)  # blocks June 3-4 and 5-6: the June 5 issue is fitted without, and batch-predicted with, the
# sessions known on June 6 at hand, so the model itself must leave out what June 5 did not know
SMALL_DEMAND = DemandConfig(
    training_days=7,
    calibration_days=2,
    min_history_days=7,
    lightgbm=LightGBMParams(num_boost_round=10, min_data_in_leaf=5),
)


class RecordingForecaster(FlatForecaster):
    """The flat test forecaster that records each call and the last session end it saw."""

    name = "recording"

    def __init__(self, log: list[tuple[str, datetime, datetime | None]]) -> None:
        super().__init__()
        self.log = log

    def fit(self, sessions: pl.DataFrame, *, issued_at: datetime, **kwargs: Any) -> Self:
        self.log.append(("fit", issued_at, sessions["plug_out_at"].max()))
        return super().fit(sessions, issued_at=issued_at, **kwargs)

    def predict(
        self, sessions: pl.DataFrame, *, issued_at: datetime, **kwargs: Any
    ) -> pl.DataFrame:
        self.log.append(("predict", issued_at, sessions["plug_out_at"].max()))
        return super().predict(sessions, issued_at=issued_at, **kwargs)


class FailingForecaster(RecordingForecaster):
    name = "failing"

    def fit(self, sessions: pl.DataFrame, **_: object) -> Self:  # type: ignore[override]
        msg = "too little history for this test model"
        raise ForecastingError(msg)


class ShortForecaster(RecordingForecaster):
    name = "short"

    def predict(self, sessions: pl.DataFrame, **kwargs: object) -> pl.DataFrame:  # type: ignore[override]
        return super().predict(sessions, **kwargs).head(3)  # type: ignore[arg-type]


def test_forecasts_keep_the_output_contract(london_site: SiteConfig, make_sessions) -> None:
    sessions = make_sessions(london_site.site_id, DATA_START, days=45)
    factories = build_factories(
        ["seasonal_naive", "persistence"], sites=[london_site], resolution=SPEC.resolution
    )
    result = run_backtest(sessions, sites=[london_site], factories=factories, spec=SPEC)
    forecasts = result.forecasts
    assert forecasts.schema == pl.Schema(FORECAST_SCHEMA)
    assert forecasts.select(FORECAST_KEY).is_duplicated().sum() == 0
    assert (forecasts["issued_at"] <= forecasts["interval_start"]).all()
    assert ((forecasts["p10"] <= forecasts["p50"]) & (forecasts["p50"] <= forecasts["p90"])).all()
    assert (forecasts["p10"] >= 0).all()
    for model in ("seasonal_naive", "persistence"):
        rows = forecasts.filter(pl.col("model") == model).select(result.grid.columns)
        assert_frame_equal(rows, result.grid, check_row_order=False)
    assert result.actuals.schema == pl.Schema(ACTUALS_SCHEMA)
    assert result.actuals.height == result.grid.select("interval_start").n_unique() == 7 * 24
    assert result.actuals["energy_kwh"].null_count() == 0


def test_each_model_is_refit_on_the_cadence_and_sees_only_ended_sessions(
    london_site: SiteConfig, make_sessions
) -> None:
    log: list[tuple[str, datetime, datetime | None]] = []
    sessions = make_sessions(london_site.site_id, DATA_START, days=45)
    run_backtest(
        sessions,
        sites=[london_site],
        factories={"recording": lambda _site: RecordingForecaster(log)},
        spec=SPEC,
    )
    fits = [issued_at for kind, issued_at, _ in log if kind == "fit"]
    assert fits == [
        datetime(2019, 5, 31, 23, tzinfo=UTC),
        datetime(2019, 6, 3, 23, tzinfo=UTC),
        datetime(2019, 6, 6, 23, tzinfo=UTC),
    ]
    assert sum(kind == "predict" for kind, _, _ in log) == 7
    assert all(last is not None and last < issued_at for _, issued_at, last in log)


def test_a_model_that_cannot_fit_writes_the_fallback_and_says_so(
    london_site: SiteConfig, make_sessions
) -> None:
    sessions = make_sessions(london_site.site_id, DATA_START, days=45)
    result = run_backtest(
        sessions,
        sites=[london_site],
        factories={
            "failing": lambda _site: FailingForecaster([]),
            "seasonal_naive": lambda _site: SeasonalNaive(),
        },
        spec=SPEC,
    )
    failing = result.forecasts.filter(pl.col("model") == "failing")
    naive = result.forecasts.filter(pl.col("model") == "seasonal_naive")
    assert failing.height == naive.height == result.grid.height
    assert failing["note"].str.starts_with("fallback to seasonal_naive: failing could not").all()
    # the fallback is seasonal naive fitted at each issue time (the model's spread is fitted
    # per refit block), so their point forecasts agree, not necessarily their spreads
    assert_frame_equal(failing.select("p50"), naive.select("p50"))


def test_without_any_history_zeros_are_written_and_noted(
    london_site: SiteConfig, sessions_from_rows
) -> None:
    late = datetime(2019, 6, 20, tzinfo=UTC)
    sessions = sessions_from_rows(london_site.site_id, [(late, late + timedelta(hours=1), 5.0)])
    result = run_backtest(
        sessions,
        sites=[london_site],
        factories={"seasonal_naive": lambda _site: SeasonalNaive()},
        spec=SPEC,
    )
    assert result.forecasts.height == result.grid.height
    assert (result.forecasts["p90"] == 0).all()
    assert result.forecasts["note"].str.contains("zeros written").all()


def test_a_model_that_skips_intervals_is_an_error(london_site: SiteConfig, make_sessions) -> None:
    sessions = make_sessions(london_site.site_id, DATA_START, days=45)
    with pytest.raises(SchemaError, match="'short' returned 3 rows"):
        run_backtest(
            sessions,
            sites=[london_site],
            factories={"short": lambda _site: ShortForecaster([])},
            spec=SPEC,
        )


@pytest.mark.slow
def test_no_forecast_uses_a_session_that_ended_after_its_issue_time(
    london_site: SiteConfig, make_sessions, sessions_from_rows
) -> None:
    """Plant huge sessions that end after the June 5 issue; no model may see them at it."""
    sessions = make_sessions(london_site.site_id, DATA_START, days=45)
    issue = datetime(2019, 6, 4, 23, tzinfo=UTC)  # June 5, 00:00 BST
    spikes = sessions_from_rows(
        london_site.site_id,
        [
            (issue - timedelta(hours=3), issue + timedelta(hours=3), 5000.0),  # plugged in at it
            (issue + timedelta(hours=10), issue + timedelta(hours=12), 5000.0),  # after it
        ],
        prefix="spike",
    )
    factories = build_factories(
        ["demand", "seasonal_naive", "persistence"],
        sites=[london_site],
        resolution=SPEC.resolution,
        demand_config=SMALL_DEMAND,
    )
    clean = run_backtest(sessions, sites=[london_site], factories=factories, spec=LEAK_SPEC)
    spiked = run_backtest(
        pl.concat([sessions, spikes]), sites=[london_site], factories=factories, spec=LEAK_SPEC
    )
    assert set(clean.forecasts["model"].unique()) == {"demand", "seasonal_naive", "persistence"}
    assert clean.forecasts["note"].null_count() == clean.forecasts.height  # no fallback hid it
    up_to_issue = pl.col("issued_at") <= issue
    assert_frame_equal(spiked.forecasts.filter(up_to_issue), clean.forecasts.filter(up_to_issue))
    # the test can see a leak: once the spike has ended, it changes the forecasts
    later = ~up_to_issue & (pl.col("model") == "persistence")
    assert spiked.forecasts.filter(later)["p50"].max() > clean.forecasts.filter(later)["p50"].max()
