"""Site-level PV steps of the flows: read a PV site's weather and measured PV, forecast its PV.

Plain functions like :mod:`flows.steps`; the PV forecast itself is
:func:`forecasting.backtest.pv.forecast_pv`, the same code path as ``evcast backtest --target pv``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from forecasting.backtest.pv import forecast_pv, measured_site
from forecasting.config import SiteConfig
from forecasting.io.lake import read_table
from forecasting.publication.contract import PUBLISHED_DECIMALS, ModelIdentity, TargetForecast
from forecasting.schemas import PV_SCHEMA, WEATHER_SCHEMA

SOLAR_PHYSICS_IDENTITY: Final = ModelIdentity(name="pvwatts_physics", version="1", alias=None)
SOLAR_FITTED_IDENTITY: Final = ModelIdentity(name="solar", version="fitted_at_issue", alias=None)
WEATHER_VALUES: Final = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover")


def read_site_solar(lake_dir: Path, *, site: SiteConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read a PV site's weather and measured PV from the lake (empty frames without PV)."""
    if site.pv is None:
        return pl.DataFrame(schema=WEATHER_SCHEMA), pl.DataFrame(schema=PV_SCHEMA)
    weather = read_table(lake_dir, "weather", WEATHER_SCHEMA, sites=[site.site_id]).collect()
    pv = read_table(lake_dir, "pv", PV_SCHEMA, sites=[measured_site(site)]).collect()
    return weather, pv


def resample_solar(
    weather: pl.DataFrame, pv: pl.DataFrame, *, resolution: timedelta
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Average weather [W/m^2, degC, m/s] and measured PV [kW] over intervals of ``resolution``.

    Forecast weather stays per issue: rows are grouped by ``kind`` and ``issued_at`` too.
    """
    start = pl.col("interval_start").dt.truncate(resolution)
    weather = (
        weather.group_by("site_id", "kind", "issued_at", start, maintain_order=True)
        .agg(pl.col(WEATHER_VALUES).mean())
        .sort("interval_start")
    )
    pv = (
        pv.drop_nulls("pv_ac_kw")
        .group_by("site_id", start, maintain_order=True)
        .agg(pl.col("pv_ac_kw").mean())
        .sort("interval_start")
    )
    return weather, pv


def build_pv_target(
    weather: pl.DataFrame,
    pv: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    interval_starts: pl.Series,
    resolution: timedelta,
) -> TargetForecast | None:
    """Forecast a PV site's AC energy per interval [kWh] as a run target; None without PV.

    :func:`forecasting.backtest.pv.forecast_pv` at the run's resolution: physics from weather
    forecasts issued before ``issued_at`` (clear sky where none, marked in the fallback
    reason), corrected by a model fitted on PV measured before ``issued_at`` where there is
    enough. Quantiles are rounded like demand's, so reruns hash the same.
    """
    if site.pv is None:
        return None
    weather, pv = resample_solar(weather, pv, resolution=resolution)
    frame, fitted = forecast_pv(
        pv,
        weather,
        site=site,
        issued_at=issued_at,
        interval_starts=interval_starts,
        resolution=resolution,
    )
    reasons = [] if fitted else ["too little measured PV before issue time: physics only"]
    clear = int(frame["clear_sky"].sum())
    if clear:
        reasons.append(
            f"no weather forecast issued before issue time for {clear} of {frame.height} "
            "intervals: clear-sky PV there"
        )
    return TargetForecast(
        frame.select("interval_start", pl.col("p10", "p50", "p90").round(PUBLISHED_DECIMALS)),
        SOLAR_FITTED_IDENTITY if fitted else SOLAR_PHYSICS_IDENTITY,
        "; ".join(reasons) or None,
    )
