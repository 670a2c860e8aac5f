"""PV physics with pvlib: PVWatts AC power of a site's PV system from weather.

The chain follows NREL's PVWatts (Dobos 2014) as pvlib implements it: solar position and clear
sky at the middle of each interval and Erbs decomposition of GHI into DNI/DHI where only GHI is
known (both from :mod:`features.solar_geometry`, the project's one home of sun geometry),
Hay-Davies transposition to the plane of array, Faiman cell temperature, ``pvwatts_dc``,
system losses (``losses_percent``, whose PVWatts default of 14 % equals
``pvlib.pvsystem.pvwatts_losses()``) and the PVWatts inverter, whose output never exceeds
the AC rating.

Frames are polars; pvlib gets numpy arrays, so no pandas is needed here. Inputs are interval
averages labelled by ``interval_start`` [UTC]; angles are evaluated at the interval midpoint.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl
import pvlib

from features.solar_geometry import add_decomposed_irradiance, add_solar_geometry
from forecasting.config import PVSystem, SiteConfig
from forecasting.errors import ConfigError

DEFAULT_RESOLUTION: Final = timedelta(minutes=15)
INVERTER_EFFICIENCY: Final = 0.96
"""Nominal PVWatts inverter efficiency [-] (pvlib.inverter.pvwatts default)."""
DEFAULT_TEMP_AIR: Final = 20.0
"""Air temperature [degC] assumed where the weather has none."""
DEFAULT_WIND_SPEED: Final = 1.0
"""Wind speed [m/s] assumed where the weather has none (pvlib.temperature.faiman default)."""
CLEAR_SKY_NOTE: Final = "clear_sky: no irradiance for this interval"
IRRADIANCE: Final = ("ghi", "dni", "dhi")
GEOMETRY: Final = (
    "solar_zenith",
    "solar_azimuth",
    "dni_extra",
    "clearsky_ghi",
    "clearsky_dni",
    "clearsky_dhi",
)
"""Geometry columns the physics needs (see :func:`features.solar_geometry.add_solar_geometry`)."""


def _ac_power_kw(frame: pl.DataFrame, pv: PVSystem) -> np.ndarray:
    """PVWatts AC power [kW] from irradiance, weather and geometry columns of ``frame``."""
    poa = pvlib.irradiance.get_total_irradiance(
        pv.tilt,
        pv.azimuth,
        frame["solar_zenith"].to_numpy(),
        frame["solar_azimuth"].to_numpy(),
        frame["dni"].to_numpy(),
        frame["ghi"].to_numpy(),
        frame["dhi"].to_numpy(),
        dni_extra=frame["dni_extra"].to_numpy(),
        model="haydavies",
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float)).clip(min=0.0)
    temp_cell = pvlib.temperature.faiman(
        poa_global, frame["temp_air"].to_numpy(), frame["wind_speed"].to_numpy()
    )
    pdc = pvlib.pvsystem.pvwatts_dc(poa_global, temp_cell, pv.capacity_kw * 1000.0, pv.gamma_pdc)
    pdc = np.asarray(pdc, dtype=float) * (1.0 - pv.losses_percent / 100.0)
    ac_kw = pv.ac_limit_kw
    pac = pvlib.inverter.pvwatts(pdc, ac_kw * 1000.0 / INVERTER_EFFICIENCY, INVERTER_EFFICIENCY)
    return np.clip(np.asarray(pac, dtype=float) / 1000.0, 0.0, ac_kw)


def _site_pv(site: SiteConfig) -> PVSystem:
    if site.pv is None:
        msg = (
            f"site {site.site_id!r} has no PV system; add a `pv = {{...}}` table to its block "
            "in configs/sites.toml"
        )
        raise ConfigError(msg)
    return site.pv


def build_pv_physics(
    weather: pl.DataFrame,
    *,
    site: SiteConfig,
    interval_starts: pl.Series,
    resolution: timedelta = DEFAULT_RESOLUTION,
) -> pl.DataFrame:
    """PVWatts AC power of the site's PV system for the requested intervals.

    Parameters
    ----------
    weather
        ``interval_start`` [UTC], ``ghi`` [W/m^2]; optional ``dni``, ``dhi`` [W/m^2],
        ``temp_air`` [degC], ``wind_speed`` [m/s]. One row per interval at ``resolution``.
    site
        The site; its ``pv`` block gives capacity [kW], tilt and azimuth [deg], losses [%].
    interval_starts
        Intervals to compute [UTC]. Where ``weather`` has no ``ghi`` the Ineichen clear sky
        stands in and ``note`` says so.
    resolution
        Interval length.

    Returns
    -------
    polars.DataFrame
        ``interval_start``, ``pv_ac_kw`` [kW] (0 <= value <= AC capacity), ``pv_clear_kw``
        [kW] (the same system under a clear sky), ``clearsky_ghi`` [W/m^2], ``solar_zenith``
        [deg] and ``note``.
    """
    pv = _site_pv(site)
    grid = pl.DataFrame({"interval_start": interval_starts.cast(pl.Datetime("us", "UTC"))})
    columns = [c for c in ("ghi", "dni", "dhi", "temp_air", "wind_speed") if c in weather.columns]
    frame = grid.join(weather.select("interval_start", *columns), on="interval_start", how="left")
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c)
        for c in ("ghi", "dni", "dhi", "temp_air", "wind_speed")
        if c not in frame.columns
    )
    frame = add_solar_geometry(frame, site=site, resolution=resolution, columns=GEOMETRY)
    frame = frame.with_columns(
        pl.col("temp_air").fill_null(DEFAULT_TEMP_AIR),
        pl.col("wind_speed").fill_null(DEFAULT_WIND_SPEED),
        note=pl.when(pl.col("ghi").is_null()).then(pl.lit(CLEAR_SKY_NOTE)),
    )
    clear = frame.with_columns(ghi="clearsky_ghi", dni="clearsky_dni", dhi="clearsky_dhi")
    frame = frame.with_columns(
        pl.when(pl.col("note").is_null()).then(c).otherwise(f"clearsky_{c}").alias(c)
        for c in IRRADIANCE
    )
    frame = add_decomposed_irradiance(frame).with_columns(
        pl.col("dni").fill_null(pl.col("clearsky_dni")),
        pl.col("dhi").fill_null(pl.col("clearsky_dhi")),
    )
    return frame.select(
        "interval_start",
        pv_ac_kw=pl.Series(_ac_power_kw(frame, pv)),
        pv_clear_kw=pl.Series(_ac_power_kw(clear, pv)),
        clearsky_ghi="clearsky_ghi",
        solar_zenith="solar_zenith",
        note="note",
    )
