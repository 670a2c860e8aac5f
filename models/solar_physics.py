"""PV physics with pvlib: sun position, clear sky, GHI decomposition and PVWatts AC power.

The chain follows NREL's PVWatts (Dobos 2014) as pvlib implements it: solar position at the
middle of each interval, Erbs decomposition of GHI into DNI/DHI where only GHI is known, Hay-Davies
transposition to the plane of array, Faiman cell temperature, ``pvwatts_dc``, system losses
(``losses_percent``, whose PVWatts default of 14 % equals ``pvlib.pvsystem.pvwatts_losses()``)
and the PVWatts inverter, whose output never exceeds the AC rating.

Frames are polars; pandas appears only at the pvlib boundary. Inputs are interval averages
labelled by ``interval_start`` [UTC]; angles are evaluated at the interval midpoint.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import pandas as pd  # noqa: TID251 - pvlib boundary
import polars as pl
import pvlib

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


def _times(frame: pl.DataFrame, resolution: timedelta) -> pd.DatetimeIndex:
    """Interval midpoints of ``frame`` as a UTC pandas index (the pvlib boundary)."""
    mid = frame["interval_start"] + resolution / 2
    return pd.DatetimeIndex(mid.dt.replace_time_zone(None).to_numpy()).tz_localize("UTC")


def _location(site: SiteConfig) -> pvlib.location.Location:
    return pvlib.location.Location(
        site.latitude, site.longitude, tz="UTC", altitude=site.altitude_m
    )


def add_solar_geometry(
    frame: pl.DataFrame, *, site: SiteConfig, resolution: timedelta = DEFAULT_RESOLUTION
) -> pl.DataFrame:
    """Add the sun's position at each interval's midpoint.

    Parameters
    ----------
    frame
        Needs ``interval_start`` [UTC].
    site
        Latitude, longitude [deg] and altitude [m] of the site.
    resolution
        Interval length; angles are computed at ``interval_start + resolution / 2``.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus ``solar_zenith``, ``solar_azimuth`` [deg] and ``dni_extra`` [W/m^2].
    """
    times = _times(frame, resolution)
    position = _location(site).get_solarposition(times)
    extra = pvlib.irradiance.get_extra_radiation(times.day_of_year.to_numpy())
    return frame.with_columns(
        solar_zenith=pl.Series(position["apparent_zenith"].to_numpy(dtype=float)),
        solar_azimuth=pl.Series(position["azimuth"].to_numpy(dtype=float)),
        dni_extra=pl.Series(np.asarray(extra, dtype=float)),
    )


def add_clearsky(
    frame: pl.DataFrame, *, site: SiteConfig, resolution: timedelta = DEFAULT_RESOLUTION
) -> pl.DataFrame:
    """Add Ineichen clear-sky irradiance at each interval's midpoint.

    Parameters
    ----------
    frame
        Needs ``interval_start`` [UTC].
    site
        Location of the site; the Linke turbidity comes from pvlib's monthly climatology.
    resolution
        Interval length.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus ``ghi_clear``, ``dni_clear``, ``dhi_clear`` [W/m^2].
    """
    clear = _location(site).get_clearsky(_times(frame, resolution), model="ineichen")
    return frame.with_columns(
        **{f"{c}_clear": pl.Series(clear[c].to_numpy(dtype=float)) for c in IRRADIANCE}
    )


def add_decomposed_irradiance(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill missing ``dni``/``dhi`` from ``ghi`` with the Erbs model.

    Parameters
    ----------
    frame
        Needs ``ghi``, ``dni``, ``dhi`` [W/m^2] (nulls allowed), ``solar_zenith`` [deg] and
        ``interval_start`` [UTC] (day of year).

    Returns
    -------
    polars.DataFrame
        ``frame`` with ``dni`` and ``dhi`` filled where they were null and ``ghi`` is known,
        and a boolean ``decomposed`` marking those rows.
    """
    ghi = frame["ghi"].fill_null(0.0).clip(lower_bound=0.0).to_numpy()
    doy = frame["interval_start"].dt.ordinal_day().to_numpy()
    parts = pvlib.irradiance.erbs(ghi, frame["solar_zenith"].to_numpy(), doy)
    decomposed = (pl.col("dni").is_null() | pl.col("dhi").is_null()) & pl.col("ghi").is_not_null()
    return frame.with_columns(decomposed=decomposed).with_columns(
        dni=pl.when("decomposed").then(pl.Series(parts["dni"])).otherwise("dni"),
        dhi=pl.when("decomposed").then(pl.Series(parts["dhi"])).otherwise("dhi"),
    )


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
    ac_kw = ac_capacity_kw(pv)
    pac = pvlib.inverter.pvwatts(pdc, ac_kw * 1000.0 / INVERTER_EFFICIENCY, INVERTER_EFFICIENCY)
    return np.clip(np.asarray(pac, dtype=float) / 1000.0, 0.0, ac_kw)


def ac_capacity_kw(pv: PVSystem) -> float:
    """AC rating of the system [kW]: ``ac_capacity_kw``, or the DC capacity when unset."""
    return pv.ac_capacity_kw if pv.ac_capacity_kw is not None else pv.capacity_kw


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
        [kW] (the same system under a clear sky), ``ghi_clear`` [W/m^2], ``solar_zenith``
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
    frame = add_clearsky(
        add_solar_geometry(frame, site=site, resolution=resolution),
        site=site,
        resolution=resolution,
    )
    frame = frame.with_columns(
        pl.col("temp_air").fill_null(DEFAULT_TEMP_AIR),
        pl.col("wind_speed").fill_null(DEFAULT_WIND_SPEED),
        note=pl.when(pl.col("ghi").is_null()).then(pl.lit(CLEAR_SKY_NOTE)),
    )
    clear = frame.with_columns(ghi="ghi_clear", dni="dni_clear", dhi="dhi_clear")
    frame = frame.with_columns(
        pl.when(pl.col("note").is_null()).then(c).otherwise(f"{c}_clear").alias(c)
        for c in IRRADIANCE
    )
    frame = add_decomposed_irradiance(frame).with_columns(
        pl.col("dni").fill_null(pl.col("dni_clear")), pl.col("dhi").fill_null(pl.col("dhi_clear"))
    )
    return frame.select(
        "interval_start",
        pv_ac_kw=pl.Series(_ac_power_kw(frame, pv)),
        pv_clear_kw=pl.Series(_ac_power_kw(clear, pv)),
        ghi_clear="ghi_clear",
        solar_zenith="solar_zenith",
        note="note",
    )
