"""Rolling-origin backtest of the solar model (``evcast backtest --target pv``).

Same grid, refit blocks and output contract as the demand backtest; the target is the AC energy
of the site's PV system per interval [kWh] (measured average power [kW] x interval hours).

Models
------
``solar``
    :class:`models.solar.SolarForecaster` (PVWatts physics plus a LightGBM quantile correction),
    fitted per refit block on the PV measured before the block's first issue time; with fewer
    than :data:`MIN_TRAINING_ROWS` measured daylight intervals it falls back to physics only.
``clearsky_persistence``
    :func:`models.solar.build_clearsky_index_persistence` with a one-day lag, on PV measured
    before the issue time; a point forecast (``p10 = p50 = p90``).

Information rule: at issue time ``T`` a model sees PV intervals that ended by ``T`` and weather
forecasts issued before ``T`` (the latest issue per interval). Where a site has no weather
forecasts, weather *observations* stand in for them, and every row says so in ``note``:
such a backtest measures the model with perfect weather, an upper bound of its skill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from forecasting.backtest.contract import ACTUALS_SCHEMA, GRID_SCHEMA, check_forecasts
from forecasting.backtest.engine import STAND_IN_NOTE, BacktestResult
from forecasting.backtest.grid import BacktestSpec, assign_refit_blocks, build_grid
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError
from forecasting.schemas import FORECAST_SCHEMA, empty_frame
from models.solar import DAYLIGHT_ZENITH, SolarForecaster, build_clearsky_index_persistence
from models.solar_physics import build_pv_physics

PV_MODEL_NAMES: Final[tuple[str, ...]] = ("solar", "clearsky_persistence")
MIN_TRAINING_ROWS: Final = 96
"""Fewest measured daylight intervals the solar correction is fitted on [-]."""


def _hours(resolution: timedelta) -> float:
    return resolution / timedelta(hours=1)


def measured_site(site: SiteConfig) -> str:
    """Return the site id under which the site's measured PV is stored."""
    return (site.pv.measured_pv_site if site.pv else None) or site.site_id


def select_weather(weather: pl.DataFrame, *, issued_at: datetime) -> tuple[pl.DataFrame, bool]:
    """Weather a model may use at ``issued_at`` and whether observations stood in.

    Forecasts issued before ``issued_at`` (latest issue per interval) when the site has any
    forecast; otherwise every observation (a stand-in, to be noted).
    """
    forecasts = weather.filter(pl.col("kind") == "forecast")
    if forecasts.is_empty():
        return weather.filter(pl.col("kind") == "observation"), True
    known = forecasts.filter(pl.col("issued_at") < issued_at).sort("issued_at")
    return known.unique("interval_start", keep="last"), False


def build_pv_actuals(
    pv: pl.DataFrame, *, grid: pl.DataFrame, resolution: timedelta, site_ids: dict[str, str]
) -> pl.DataFrame:
    """Measured AC energy per grid interval [kWh] (``ACTUALS_SCHEMA``), null where unmeasured.

    ``site_ids`` maps each backtest site to the site id its PV is stored under.
    """
    hourly = (
        pv.with_columns(
            pl.col("site_id").replace({v: k for k, v in site_ids.items()}),
            pl.col("interval_start").dt.truncate(resolution),
        )
        .group_by("site_id", "interval_start")
        .agg((pl.mean("pv_ac_kw") * _hours(resolution)).alias("energy_kwh"))
    )
    intervals = grid.select("site_id", "interval_start").unique()
    return (
        intervals.join(hourly, on=["site_id", "interval_start"], how="left")
        .cast(pl.Schema(ACTUALS_SCHEMA))
        .sort("site_id", "interval_start")
    )


def _fit_solar(
    weather: pl.DataFrame,
    pv: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    res: timedelta,
) -> SolarForecaster | None:
    """Fit on PV measured by ``issued_at`` and observed (else forecast) weather, if enough."""
    observed = weather.filter(pl.col("kind") == "observation")
    history = observed if observed.height else select_weather(weather, issued_at=issued_at)[0]
    known = pv.filter(pl.col("interval_start") + res <= issued_at).drop_nulls("pv_ac_kw")
    if known.is_empty():
        return None
    daylight = build_pv_physics(
        history, site=site, interval_starts=known["interval_start"], resolution=res
    ).filter(pl.col("solar_zenith") < DAYLIGHT_ZENITH)
    if daylight.height < MIN_TRAINING_ROWS:
        return None
    return SolarForecaster().fit(history, known, site=site, resolution=res)


def _predict_solar(
    model: SolarForecaster | None,
    weather: pl.DataFrame,
    *,
    site: SiteConfig,
    starts: pl.Series,
    res: timedelta,
) -> pl.DataFrame:
    if model is not None:
        return model.predict(weather, site=site, interval_starts=starts, resolution=res).select(
            "interval_start", "p10", "p50", "p90", "note"
        )
    physics = build_pv_physics(weather, site=site, interval_starts=starts, resolution=res)
    return physics.select(
        "interval_start",
        *(pl.col("pv_ac_kw").alias(q) for q in ("p10", "p50", "p90")),
        note=pl.lit("fallback to physics only: too little measured PV to fit the correction"),
    )


def forecast_pv(
    pv: pl.DataFrame,
    weather: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    interval_starts: pl.Series,
    resolution: timedelta,
) -> tuple[pl.DataFrame, bool]:
    """PV forecast of one site issued at ``issued_at`` [kWh per interval], for publishing.

    The same path as the ``solar`` backtest model: the correction is fitted on PV measured by
    ``issued_at`` (physics only with too little of it). Unlike the backtest, observations never
    stand in for future weather: only forecasts issued before ``issued_at`` are used, and
    where there are none the clear-sky physics stands in and ``note`` says so.

    Parameters
    ----------
    pv
        The site's measured PV (``PV_SCHEMA``) at ``resolution``: ``pv_ac_kw`` [kW].
    weather
        The site's weather (``WEATHER_SCHEMA``) at ``resolution``.
    site
        The site with its ``pv`` system.
    issued_at
        Issue time [UTC].
    interval_starts
        Intervals to forecast [UTC].
    resolution
        Interval length.

    Returns
    -------
    tuple[polars.DataFrame, bool]
        ``interval_start``, ``p10``, ``p50``, ``p90`` [kWh], ``note`` and ``clear_sky`` (True
        where no weather forecast covered the interval); and whether the correction was fitted
        (False: physics only).
    """
    known, _ = select_weather(weather.filter(pl.col("kind") == "forecast"), issued_at=issued_at)
    model = _fit_solar(weather, pv, site=site, issued_at=issued_at, res=resolution)
    rows = _predict_solar(model, known, site=site, starts=interval_starts, res=resolution)
    covered = known.drop_nulls("ghi")["interval_start"]
    energy = rows.with_columns(
        pl.col("p10", "p50", "p90") * _hours(resolution),
        clear_sky=~pl.col("interval_start").is_in(covered.implode()),
    )
    return energy, model is not None


def _predict_persistence(
    pv: pl.DataFrame, *, site: SiteConfig, issued_at: datetime, starts: pl.Series, res: timedelta
) -> pl.DataFrame:
    known = pv.filter(pl.col("interval_start") + res <= issued_at)
    point = build_clearsky_index_persistence(
        known, site=site, interval_starts=starts, resolution=res
    )
    return point.select(
        "interval_start",
        *(pl.col("p50").fill_null(0.0).alias(q) for q in ("p10", "p50", "p90")),
        note=pl.when(pl.col("p50").is_null()).then(pl.lit("no clear-sky index known yet; 0 used")),
    )


def _run_pv_site(
    site: SiteConfig,
    *,
    pv: pl.DataFrame,
    weather: pl.DataFrame,
    grid: pl.DataFrame,
    models: Sequence[str],
    spec: BacktestSpec,
) -> list[pl.DataFrame]:
    res = spec.resolution
    issues = [(p["issued_at"][0], p["interval_start"]) for p in grid.partition_by("issued_at")]
    blocks = assign_refit_blocks([t for t, _ in issues], refit_every=spec.refit_every)
    frames, fitted, current = [], None, -1
    for (issued_at, starts), block in zip(issues, blocks, strict=True):
        known_weather, stand_in = select_weather(weather, issued_at=issued_at)
        for name in models:
            if name == "solar":
                if block != current:
                    fitted, current = (
                        _fit_solar(weather, pv, site=site, issued_at=issued_at, res=res),
                        block,
                    )
                rows = _predict_solar(fitted, known_weather, site=site, starts=starts, res=res)
            else:
                rows = _predict_persistence(
                    pv, site=site, issued_at=issued_at, starts=starts, res=res
                )
            note = pl.concat_str(
                pl.col("note"),
                pl.lit(STAND_IN_NOTE if stand_in else None),
                separator="; ",
                ignore_nulls=True,
            )
            frames.append(
                rows.with_columns(
                    pl.col("p10", "p50", "p90") * _hours(res),
                    note=pl.when(note != "").then(note),
                    site_id=pl.lit(site.site_id),
                    issued_at=pl.lit(issued_at),
                    model=pl.lit(name),
                )
            )
    return frames


def run_pv_backtest(
    pv: pl.DataFrame,
    weather: pl.DataFrame,
    *,
    sites: Sequence[SiteConfig],
    spec: BacktestSpec,
    models: Sequence[str] = PV_MODEL_NAMES,
    on_progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest PV forecasts [kWh per interval] of ``sites`` rolling-origin.

    Parameters
    ----------
    pv
        Measured PV (``PV_SCHEMA``): ``site_id``, ``interval_start``, ``pv_ac_kw`` [kW].
    weather
        Weather (``WEATHER_SCHEMA``) of the sites; see the module docstring for what is used.
    sites
        Sites with a ``pv`` system.
    spec
        Issue days, horizon, resolution (use the PV data's, e.g. 15 min) and refit cadence.
    models
        Any of :data:`PV_MODEL_NAMES`.
    on_progress
        Called with the number of issues forecast (times models) after each site.
    """
    unknown = [m for m in models if m not in PV_MODEL_NAMES] + [
        s.site_id for s in sites if s.pv is None
    ]
    if unknown or not models:
        msg = (
            f"cannot backtest PV with {unknown!r}: models must be among {list(PV_MODEL_NAMES)!r} "
            "and every site needs a [sites.pv] system in configs/sites.toml"
        )
        raise ConfigError(msg)
    frames, grids = [], []
    for site in sites:
        grid = build_grid(site=site, spec=spec)
        frames += _run_pv_site(
            site,
            pv=pv.filter(pl.col("site_id") == measured_site(site)),
            weather=weather.filter(pl.col("site_id") == site.site_id),
            grid=grid,
            models=models,
            spec=spec,
        )
        grids.append(grid)
        if on_progress is not None:
            on_progress(grid["issued_at"].n_unique() * len(models))
    all_grid = pl.concat(grids) if grids else empty_frame(GRID_SCHEMA)
    forecasts = (
        pl.concat(frames, how="diagonal_relaxed")
        .select(list(FORECAST_SCHEMA))
        .cast(pl.Schema(FORECAST_SCHEMA))
        if frames
        else empty_frame(FORECAST_SCHEMA)
    ).sort("model", "site_id", "issued_at", "interval_start")
    check_forecasts(forecasts, grid=all_grid)
    ids = {s.site_id: measured_site(s) for s in sites}
    actuals = build_pv_actuals(pv, grid=all_grid, resolution=spec.resolution, site_ids=ids)
    return BacktestResult(forecasts=forecasts, actuals=actuals, grid=all_grid)
