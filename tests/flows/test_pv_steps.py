"""PV targets of published runs, from the core steps directly (no Prefect)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import polars as pl

from flows.steps import build_forecast_run, select_sites
from forecasting.config import SiteConfig, load_sites
from forecasting.ingest.pv import read_pv
from forecasting.ingest.weather import read_weather
from forecasting.pipeline_config import PipelineConfig
from forecasting.publication.targets import build_publication
from forecasting.schemas import SESSIONS_SCHEMA, empty_frame
from forecasting.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample"
ISSUED_AT = datetime(2016, 10, 1, tzinfo=UTC)
NO_SESSIONS = empty_frame(SESSIONS_SCHEMA)


@cache
def serf_east() -> SiteConfig:
    """The configured SERF East site (PV only, no chargers)."""
    return next(
        s
        for s in load_sites(REPO_ROOT / "configs" / "sites.toml").sites
        if s.site_id == "serf-east"
    )


@cache
def serf_inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The sample's SERF East weather observations and measured PV, as the lake stores them."""
    ingested = datetime(2026, 1, 1, tzinfo=UTC)
    weather = read_weather(
        SAMPLE / "weather" / "serf_east_psm3_data.csv",
        site=serf_east(),
        fmt="psm3",
        ingested_at=ingested,
    ).accepted
    pv = read_pv(
        SAMPLE / "pv" / "serf_east_15min_ac_power.csv",
        site=serf_east(),
        fmt="pvdaq",
        ingested_at=ingested,
    ).accepted
    return weather, pv


def _config() -> PipelineConfig:
    return PipelineConfig.model_validate({"forecast": {"horizon_hours": 48}})


def test_pv_only_site_publishes_fitted_pv_within_capacity_and_zero_demand() -> None:
    weather, pv = serf_inputs()
    site = serf_east()
    run = build_forecast_run(
        None, NO_SESSIONS, site=site, issued_at=ISSUED_AT, config=_config(), weather=weather, pv=pv
    )
    solar = run.targets["pv"]
    frame = solar.frame
    assert frame.height == 48
    assert solar.model.name == "solar"  # the correction was fitted on the PV known at issue time
    # observations are not forecasts: the physics ran on clear sky, and the run says so
    assert solar.fallback_reason is not None
    assert "clear-sky" in solar.fallback_reason
    cap_kwh = site.pv.ac_limit_kw * 1.0  # one-hour intervals: kWh = kW x 1 h
    assert frame.filter(
        (pl.col("p10") < 0)
        | (pl.col("p10") > pl.col("p50"))
        | (pl.col("p50") > pl.col("p90"))
        | (pl.col("p90") > cap_kwh + 1e-6)  # 1e-6: the published rounding
    ).is_empty()
    assert frame["p50"].sum() > 10.0  # two early-October days of a 5.4 kW system [kWh]
    assert run.targets["demand"].frame["p90"].max() == 0.0
    publication = build_publication(run, site=site)
    assert set(publication.targets) >= {"demand", "pv", "net"}
    again = build_forecast_run(
        None, NO_SESSIONS, site=site, issued_at=ISSUED_AT, config=_config(), weather=weather, pv=pv
    )
    assert build_publication(again, site=site).run_id == publication.run_id


def test_pv_site_without_weather_or_history_gets_marked_clear_sky_physics() -> None:
    run = build_forecast_run(
        None, NO_SESSIONS, site=serf_east(), issued_at=ISSUED_AT, config=_config()
    )
    solar = run.targets["pv"]
    assert solar.model.name == "pvwatts_physics"
    assert solar.fallback_reason is not None
    assert "physics only" in solar.fallback_reason
    assert "48 of 48 intervals: clear-sky" in solar.fallback_reason
    assert solar.frame["p90"].max() > 0.0


def test_site_without_pv_has_no_pv_target() -> None:
    plain = SiteConfig(site_id="a", name="A", latitude=56.0, longitude=-3.0, timezone="UTC")
    sessions = pl.DataFrame({"site_id": ["a"]})
    assert select_sites([plain, serf_east()], sessions) == [plain]
    assert select_sites([plain, serf_east()], sessions, solar_sites=["serf-east"]) == [
        plain,
        serf_east(),
    ]
