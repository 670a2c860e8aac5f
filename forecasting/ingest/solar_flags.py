"""Per-row quality flags of weather and PV series (flagged rows are kept, not quarantined).

Each rule adds a boolean column named after its flag; :func:`collect_flags` turns them into
the ``flags`` list column of the canonical schemas. Series are grouped by ``issued_at`` so a
forecast file with several issues is checked issue by issue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

from features.solar_geometry import add_solar_geometry
from forecasting.config import SiteConfig

GAP_BEFORE: Final = "gap_before"
"""One or more intervals are missing right before this row (count in the ingest report)."""
STALE_GHI: Final = "stale_ghi"
"""Identical non-zero GHI for at least :data:`STALE_MIN_DURATION` (a stuck sensor or feed)."""
GHI_ABOVE_CLEARSKY: Final = "ghi_above_clearsky"
"""GHI above ``CLEARSKY_FACTOR x clear-sky GHI + CLEARSKY_MARGIN`` (not physical)."""
IRRADIANCE_AT_NIGHT: Final = "irradiance_at_night"
"""Sun below the horizon but GHI above :data:`NIGHT_GHI_MAX`."""
GHI_UNIT_SUSPECT: Final = "ghi_unit_suspect_kw_per_m2"
"""Daily maximum GHI below 2: the file probably holds [kW/m^2]; not converted."""
GHI_CONVERTED: Final = "ghi_converted_from_kw_per_m2"
"""Irradiance multiplied by 1000 because the file held [kW/m^2] and conversion was asked."""
DECOMPOSED: Final = "dni_dhi_from_ghi_erbs"
"""DNI and DHI were missing and were computed from GHI with the Erbs model."""
NEGATIVE_CLIPPED: Final = "negative_clipped_to_zero"
"""A slightly negative irradiance or power value (sensor offset at night) was set to 0."""

STALE_MIN_DURATION: Final = timedelta(hours=3)
CLEARSKY_FACTOR: Final = 1.5
CLEARSKY_MARGIN: Final = 50.0
"""[W/m^2]"""
NIGHT_GHI_MAX: Final = 10.0
"""[W/m^2]"""
UNIT_DAILY_MAX: Final = 2.0
"""A day whose largest GHI is below this [W/m^2] (but positive) is in [kW/m^2]."""

ORDER: Final = (
    GHI_CONVERTED,
    GHI_UNIT_SUSPECT,
    NEGATIVE_CLIPPED,
    DECOMPOSED,
    GAP_BEFORE,
    STALE_GHI,
    GHI_ABOVE_CLEARSKY,
    IRRADIANCE_AT_NIGHT,
)


def compute_resolution(frame: pl.DataFrame) -> timedelta:
    """Most common step between consecutive ``interval_start`` values (15 min if unknown)."""
    steps = (
        frame.sort("interval_start")
        .select(pl.col("interval_start").diff().over("issued_at").alias("step"))
        .filter(pl.col("step") > timedelta(0))
    )
    if steps.is_empty():
        return timedelta(minutes=15)
    return steps["step"].mode().sort()[0]


def add_gap_flags(frame: pl.DataFrame, *, resolution: timedelta) -> pl.DataFrame:
    """Flag the row after missing intervals; ``missing_before`` counts them [-].

    ``frame`` needs ``interval_start`` [UTC] and ``issued_at``, sorted by both.
    """
    step = pl.col("interval_start").diff().over("issued_at")
    missing = (step / resolution - 1).floor().cast(pl.Int64).fill_null(0).clip(lower_bound=0)
    return frame.with_columns(missing_before=missing).with_columns(
        (pl.col("missing_before") > 0).alias(GAP_BEFORE)
    )


def add_stale_flags(frame: pl.DataFrame, *, resolution: timedelta) -> pl.DataFrame:
    """Flag runs of identical non-zero GHI lasting at least :data:`STALE_MIN_DURATION`."""
    changed = (pl.col("ghi") != pl.col("ghi").shift(1)).fill_null(True) | pl.col(GAP_BEFORE)
    run = changed.cast(pl.Int64).cum_sum().over("issued_at")
    return (
        frame.with_columns(_run=run)
        .with_columns(_run_len=pl.len().over("issued_at", "_run"))
        .with_columns(
            ((pl.col("_run_len") * resolution >= STALE_MIN_DURATION) & (pl.col("ghi") > 0))
            .fill_null(False)
            .alias(STALE_GHI)
        )
        .drop("_run", "_run_len")
    )


def add_sky_columns(
    frame: pl.DataFrame, *, site: SiteConfig, resolution: timedelta
) -> pl.DataFrame:
    """Add ``clearsky_ghi`` [W/m^2] and ``solar_zenith`` [deg] at the site (interval midpoints)."""
    return add_solar_geometry(
        frame, site=site, resolution=resolution, columns=("solar_zenith", "clearsky_ghi")
    )


def add_sky_flags(frame: pl.DataFrame) -> pl.DataFrame:
    """Flag GHI above the clear-sky bound and irradiance while the sun is down.

    ``frame`` needs ``ghi``, ``clearsky_ghi`` [W/m^2] and ``solar_zenith`` [deg]
    (see :func:`add_sky_columns`).
    """
    bound = CLEARSKY_FACTOR * pl.col("clearsky_ghi") + CLEARSKY_MARGIN
    return frame.with_columns(
        (pl.col("ghi") > bound).fill_null(False).alias(GHI_ABOVE_CLEARSKY),
        ((pl.col("solar_zenith") > 90) & (pl.col("ghi") > NIGHT_GHI_MAX))
        .fill_null(False)
        .alias(IRRADIANCE_AT_NIGHT),
    )


def add_unit_flags(frame: pl.DataFrame, *, site: SiteConfig, convert: bool) -> pl.DataFrame:
    """Flag (or convert, when ``convert``) days whose GHI looks like [kW/m^2].

    A site-local day whose largest daytime GHI (sun more than 5 deg up, ``solar_zenith`` < 85)
    is positive but below :data:`UNIT_DAILY_MAX` cannot be [W/m^2]. Converting multiplies
    ``ghi``, ``dni`` and ``dhi`` of that day by 1000. Needs ``solar_zenith`` [deg].
    """
    day = pl.col("interval_start").dt.convert_time_zone(site.timezone).dt.date()
    daytime_ghi = pl.when(pl.col("solar_zenith") < 85).then(pl.col("ghi"))
    day_max = daytime_ghi.max().over(day, "issued_at")
    suspect = ((day_max > 0) & (day_max < UNIT_DAILY_MAX)).fill_null(False)
    frame = frame.with_columns(suspect.alias("_kw"))
    if convert:
        frame = frame.with_columns(
            pl.when("_kw").then(pl.col(c) * 1000.0).otherwise(c).alias(c)
            for c in ("ghi", "dni", "dhi")
        )
    return frame.with_columns(
        pl.col("_kw").alias(GHI_CONVERTED if convert else GHI_UNIT_SUSPECT),
        pl.lit(False).alias(GHI_UNIT_SUSPECT if convert else GHI_CONVERTED),
    ).drop("_kw")


def add_negative_clipping(frame: pl.DataFrame, *, columns: tuple[str, ...]) -> pl.DataFrame:
    """Set negative values of ``columns`` to 0 and flag the rows where that happened."""
    negative = pl.any_horizontal(pl.col(c) < 0 for c in columns).fill_null(False)
    return frame.with_columns(negative.alias(NEGATIVE_CLIPPED)).with_columns(
        pl.col(c).clip(lower_bound=0.0) for c in columns
    )


def collect_flags(frame: pl.DataFrame, *, names: tuple[str, ...] = ORDER) -> pl.DataFrame:
    """Gather the boolean flag columns into one ``flags`` list column and drop them."""
    present = [n for n in names if n in frame.columns]
    if not present:
        return frame.with_columns(flags=pl.lit([], dtype=pl.List(pl.String)))
    listed = pl.concat_list(pl.when(n).then(pl.lit(n)).otherwise(None) for n in present)
    return frame.with_columns(flags=listed.list.drop_nulls()).drop(present)


def count_flags(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per flag of a frame with a ``flags`` list column."""
    counts = frame.select(pl.col("flags").explode().drop_nulls().value_counts(sort=True))
    return {row["flags"]: row["count"] for row in counts.unnest("flags").iter_rows(named=True)}
