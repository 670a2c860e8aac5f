"""Solar position and clear-sky irradiance of a site from pvlib (known in advance, no data).

pvlib works on pandas; pandas appears only in this module, at that boundary.

Speed: solar position uses pvlib's ``ephemeris`` method (within about 0.4 deg of the NREL SPA
near the horizon and far closer at useful sun heights; eight times faster), and the Linke
turbidity climatology of a site is read once per process and day of year, then passed to
``Location.get_clearsky`` (Ineichen-Perez, with the site's altitude).
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd  # noqa: TID251 - pvlib boundary
import polars as pl
from pvlib.clearsky import lookup_linke_turbidity
from pvlib.irradiance import get_extra_radiation
from pvlib.location import Location

from forecasting.config import SiteConfig

SOLAR_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "solar_zenith",
    "solar_azimuth",
    "clearsky_ghi",
    "clearsky_dni",
    "clearsky_dhi",
)
"""Columns added by :func:`add_solar_geometry`, in order."""


@lru_cache(maxsize=256)
def _linke_by_day_of_year(latitude: float, longitude: float) -> np.ndarray:
    """Linke turbidity [-] for day of year 1..366 (index 0..365), pvlib's daily interpolation."""
    leap_year = pd.date_range("2020-01-01 12:00", periods=366, freq="D", tz="UTC")
    return lookup_linke_turbidity(leap_year, latitude, longitude).to_numpy()


def compute_solar_geometry(times: pl.Series, *, site: SiteConfig) -> pl.DataFrame:
    """Return solar position and Ineichen clear-sky irradiance at the instants ``times``.

    Parameters
    ----------
    times
        UTC instants (no nulls).
    site
        Gives latitude and longitude [deg] and altitude [m].

    Returns
    -------
    polars.DataFrame
        ``time`` plus ``solar_zenith`` (apparent) [deg], ``solar_azimuth`` [deg] clockwise from
        north, ``clearsky_ghi``, ``clearsky_dni``, ``clearsky_dhi`` [W/m^2].
    """
    location = Location(
        site.latitude, site.longitude, tz="UTC", altitude=site.altitude_m, name=site.site_id
    )
    index = pd.DatetimeIndex(times.to_numpy(), tz="UTC")
    position = location.get_solarposition(index, method="ephemeris")
    day_of_year = index.day_of_year.to_numpy()
    linke = _linke_by_day_of_year(site.latitude, site.longitude)[day_of_year - 1]
    clearsky = location.get_clearsky(
        index,
        model="ineichen",
        solar_position=position,
        dni_extra=get_extra_radiation(day_of_year),
        linke_turbidity=pd.Series(linke, index=index),
    )
    return pl.DataFrame(
        {
            "time": times,
            "solar_zenith": position["apparent_zenith"].to_numpy(),
            "solar_azimuth": position["azimuth"].to_numpy(),
            "clearsky_ghi": clearsky["ghi"].to_numpy(),
            "clearsky_dni": clearsky["dni"].to_numpy(),
            "clearsky_dhi": clearsky["dhi"].to_numpy(),
        },
        schema_overrides={"time": times.dtype},
    )


def add_solar_geometry(
    frame: pl.DataFrame,
    *,
    site: SiteConfig,
    column: str = "interval_start",
    resolution: timedelta | None = None,
) -> pl.DataFrame:
    """Add solar position and clear-sky irradiance for each row's interval.

    Parameters
    ----------
    frame
        Any frame with the UTC timestamp ``column``.
    site
        Gives latitude, longitude [deg] and altitude [m].
    column
        Interval start [UTC].
    resolution
        Interval length: when given, geometry is evaluated at the interval midpoint (a
        good stand-in for the interval average); otherwise at ``column`` itself.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus :data:`SOLAR_FEATURE_COLUMNS` (see :func:`compute_solar_geometry`).
    """
    offset = resolution / 2 if resolution is not None else timedelta(0)
    instant = (pl.col(column) + offset).alias("_solar_time")
    frame = frame.with_columns(instant)
    times = frame["_solar_time"].drop_nulls().unique().sort()
    geometry = compute_solar_geometry(times, site=site).rename({"time": "_solar_time"})
    return frame.join(geometry, on="_solar_time", how="left", maintain_order="left").drop(
        "_solar_time"
    )
