"""``--target pv`` core on the bundled SERF East sample (measured PV, satellite weather)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from forecasting.backtest.engine import BacktestResult
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.metrics import compute_backtest_metrics
from forecasting.backtest.pv import run_pv_backtest
from forecasting.config import SiteConfig, load_sites
from forecasting.errors import ConfigError
from forecasting.ingest.pv import read_pv
from forecasting.ingest.weather import read_weather
from forecasting.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample"
SPEC = BacktestSpec(
    start=date(2016, 9, 1),
    end=date(2016, 9, 4),
    resolution=timedelta(minutes=15),
    refit_every=timedelta(days=2),
)


@pytest.fixture(scope="module")
def serf() -> tuple[SiteConfig, pl.DataFrame, pl.DataFrame]:
    site = load_sites(REPO_ROOT / "configs" / "sites.toml").get("serf-east")
    pv_file = SAMPLE / "pv" / "serf_east_15min_ac_power.csv"
    weather_file = SAMPLE / "weather" / "serf_east_psm3_data.csv"
    if site is None or not pv_file.exists() or not weather_file.exists():
        pytest.skip("serf-east config or the bundled solar sample is missing")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pv = read_pv(pv_file, site=site, fmt="pvdaq", ingested_at=now).accepted
    weather = read_weather(weather_file, site=site, fmt="psm3", ingested_at=now).accepted
    return site, pv, weather


@pytest.fixture(scope="module")
def clean(serf: tuple[SiteConfig, pl.DataFrame, pl.DataFrame]) -> BacktestResult:
    site, pv, weather = serf
    return run_pv_backtest(pv, weather, sites=[site], spec=SPEC)  # checks the contract


@pytest.mark.slow
def test_pv_backtest_keeps_the_contract_and_marks_the_weather_stand_in(
    serf: tuple[SiteConfig, pl.DataFrame, pl.DataFrame], clean: BacktestResult
) -> None:
    site, _, _ = serf
    result = clean
    assert result.forecasts.height == 2 * result.grid.height == 2 * 4 * 96
    solar = result.forecasts.filter(pl.col("model") == "solar")
    assert solar["note"].str.contains("weather observations stood in").all()
    capacity_kwh = 5.4 * 0.25  # AC rating [kW] x 15 min
    assert solar["p90"].max() <= capacity_kwh + 1e-9  # float rounding of the kW -> kWh product
    metrics = compute_backtest_metrics(
        result.forecasts,
        result.actuals,
        resolution=SPEC.resolution,
        timezones={site.site_id: site.timezone},
    )
    mae = dict(metrics.overall.select("model", "mae").iter_rows())
    assert mae["solar"] < mae["clearsky_persistence"]  # physics with observed weather wins


@pytest.mark.slow
def test_issue_times_see_no_pv_measured_after_them(
    serf: tuple[SiteConfig, pl.DataFrame, pl.DataFrame], clean: BacktestResult
) -> None:
    site, pv, weather = serf
    issue = datetime(2016, 9, 3, 6, tzinfo=UTC)  # Sept 3, 00:00 in Denver
    doctored = pv.with_columns(
        pl.when(pl.col("interval_start") >= issue).then(0.0).otherwise("pv_ac_kw").alias("pv_ac_kw")
    )
    before = clean.forecasts
    changed = run_pv_backtest(doctored, weather, sites=[site], spec=SPEC).forecasts
    up_to = pl.col("issued_at") <= issue
    assert before.filter(up_to).equals(changed.filter(up_to))
    later = ~up_to & (pl.col("model") == "clearsky_persistence")
    assert not before.filter(later).equals(changed.filter(later))  # the test can see a leak


def test_sites_without_a_pv_system_are_refused() -> None:
    site = SiteConfig(site_id="x", name="x", latitude=0, longitude=0, timezone="UTC")
    empty = pl.DataFrame()
    with pytest.raises(ConfigError, match=r"\['x'\]"):
        run_pv_backtest(empty, empty, sites=[site], spec=SPEC)
