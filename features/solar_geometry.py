"""Solar position, clear-sky irradiance and GHI decomposition of a site, from pvlib.

The one home of the project's sun geometry: the demand features (``features/matrix.py``), the
PV physics (``models/solar_physics.py``) and the weather and PV quality flags
(``forecasting/ingest``) all call it. Frames are polars; pandas appears only in this module, at
the pvlib boundary.

Conventions: ``interval_start`` labels an interval by its start [UTC]; given a ``resolution``,
geometry is evaluated at the interval midpoint (a good stand-in for the interval average).

Speed: solar position uses pvlib's ``ephemeris`` method (within about 0.4 deg of the NREL SPA
near the horizon and 0.01 deg at useful sun heights; several times faster), each distinct
instant is computed once, and the Linke turbidity climatology of a site is read once per
process and interpolated to the day of year exactly as ``pvlib.clearsky.lookup_linke_turbidity``
does (leap and common years apart), then passed to ``Location.get_clearsky`` (Ineichen-Perez,
with the site's altitude).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd  # noqa: TID251 - pvlib boundary
import polars as pl
from pvlib.clearsky import lookup_linke_turbidity
from pvlib.irradiance import erbs, get_extra_radiation
from pvlib.location import Location

from forecasting.config import SiteConfig
from forecasting.errors import SchemaError

SOLAR_FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "solar_zenith",
    "solar_azimuth",
    "clearsky_ghi",
    "clearsky_dni",
    "clearsky_dhi",
)
"""Columns added by :func:`add_solar_geometry` by default, in order."""
GEOMETRY_COLUMNS: Final[tuple[str, ...]] = (*SOLAR_FEATURE_COLUMNS, "dni_extra")
"""Every column :func:`compute_solar_geometry` gives besides ``time``."""


@lru_cache(maxsize=256)
def _linke_by_day_of_year(latitude: float, longitude: float, *, leap: bool) -> np.ndarray:
    """Linke turbidity [-] for day of year 1..366 (index 0..365), pvlib's daily interpolation."""
    year = 2016 if leap else 2015
    days = pd.date_range(f"{year}-01-01 12:00", periods=366 if leap else 365, freq="D", tz="UTC")
    table = lookup_linke_turbidity(days, latitude, longitude).to_numpy()
    return table if leap else np.append(table, table[-1])


def _linke(index: pd.DatetimeIndex, site: SiteConfig) -> np.ndarray:
    """Linke turbidity [-] at each instant of ``index`` (UTC)."""
    day = index.day_of_year.to_numpy() - 1
    leap = index.is_leap_year
    by_leap = _linke_by_day_of_year(site.latitude, site.longitude, leap=True)
    by_common = _linke_by_day_of_year(site.latitude, site.longitude, leap=False)
    return np.where(leap, by_leap[day], by_common[day])


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
        north, ``clearsky_ghi``, ``clearsky_dni``, ``clearsky_dhi`` and ``dni_extra``
        (extraterrestrial normal irradiance) [W/m^2].
    """
    location = Location(
        site.latitude, site.longitude, tz="UTC", altitude=site.altitude_m, name=site.site_id
    )
    index = pd.DatetimeIndex(times.dt.replace_time_zone(None).to_numpy()).tz_localize("UTC")
    position = location.get_solarposition(index, method="ephemeris")
    dni_extra = np.asarray(get_extra_radiation(index.day_of_year.to_numpy()), dtype=float)
    clearsky = location.get_clearsky(
        index,
        model="ineichen",
        solar_position=position,
        dni_extra=dni_extra,
        linke_turbidity=pd.Series(_linke(index, site), index=index),
    )
    return pl.DataFrame(
        {
            "time": times,
            "solar_zenith": position["apparent_zenith"].to_numpy(dtype=float),
            "solar_azimuth": position["azimuth"].to_numpy(dtype=float),
            "clearsky_ghi": clearsky["ghi"].to_numpy(dtype=float),
            "clearsky_dni": clearsky["dni"].to_numpy(dtype=float),
            "clearsky_dhi": clearsky["dhi"].to_numpy(dtype=float),
            "dni_extra": dni_extra,
        },
        schema_overrides={"time": times.dtype},
    )


def add_solar_geometry(
    frame: pl.DataFrame,
    *,
    site: SiteConfig,
    column: str = "interval_start",
    resolution: timedelta | None = None,
    columns: Sequence[str] = SOLAR_FEATURE_COLUMNS,
) -> pl.DataFrame:
    """Add solar position and clear-sky irradiance for each row's interval.

    Uses nothing but the timestamps and the site, so it is known for any ``issued_at``.

    Parameters
    ----------
    frame
        Any frame with the UTC timestamp ``column`` (nulls give null geometry).
    site
        Gives latitude, longitude [deg] and altitude [m].
    column
        Interval start [UTC].
    resolution
        Interval length: when given, geometry is evaluated at the interval midpoint (a
        good stand-in for the interval average); otherwise at ``column`` itself.
    columns
        Which of :data:`GEOMETRY_COLUMNS` to add, in this order.

    Returns
    -------
    polars.DataFrame
        ``frame`` plus ``columns`` (see :func:`compute_solar_geometry` for units).
    """
    unknown = [c for c in columns if c not in GEOMETRY_COLUMNS]
    if unknown:
        msg = f"unknown solar geometry columns {unknown!r}; choose from {GEOMETRY_COLUMNS!r}"
        raise SchemaError(msg)
    offset = resolution / 2 if resolution is not None else timedelta(0)
    frame = frame.with_columns((pl.col(column) + offset).alias("_solar_time"))
    times = frame["_solar_time"].drop_nulls().unique().sort()
    geometry = compute_solar_geometry(times, site=site).select(
        pl.col("time").alias("_solar_time"), *columns
    )
    return frame.join(geometry, on="_solar_time", how="left", maintain_order="left").drop(
        "_solar_time"
    )


def add_decomposed_irradiance(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill missing ``dni``/``dhi`` from ``ghi`` with the Erbs model.

    Parameters
    ----------
    frame
        Needs ``ghi``, ``dni``, ``dhi`` [W/m^2] (nulls allowed), ``solar_zenith`` [deg] (see
        :func:`add_solar_geometry`) and ``interval_start`` [UTC] (day of year).

    Returns
    -------
    polars.DataFrame
        ``frame`` with ``dni`` and ``dhi`` [W/m^2] filled where they were null and ``ghi`` is
        known, and a boolean ``decomposed`` marking those rows.
    """
    ghi = frame["ghi"].fill_null(0.0).clip(lower_bound=0.0).to_numpy()
    doy = frame["interval_start"].dt.ordinal_day().to_numpy()
    parts = erbs(ghi, frame["solar_zenith"].to_numpy(), doy)
    decomposed = (pl.col("dni").is_null() | pl.col("dhi").is_null()) & pl.col("ghi").is_not_null()
    return frame.with_columns(decomposed=decomposed).with_columns(
        dni=pl.when("decomposed").then(pl.Series(parts["dni"])).otherwise("dni"),
        dhi=pl.when("decomposed").then(pl.Series(parts["dhi"])).otherwise("dhi"),
    )
