"""Measured PV ingestion: PVDAQ exports and a plain CSV to the ``pv`` table [kW].

Formats
-------
``pvdaq``
    PVDAQ / pvanalytics export: ``measured_on`` (local time with its UTC offset, e.g.
    ``2016-07-01 10:15:00-06:00``) and ``ac_power`` [W]. Stamps are stored as interval starts,
    unshifted, on the 15-minute grid of the weather. Measured on SERF East (bench_solar,
    "labelling check 2"): the daily power centroid lies +6 to +7 min after that of clear-sky
    physics evaluated at interval midpoints, i.e. the values behave like instants (or centred
    averages) at the stamp rather than averages over ``[stamp, stamp + 15 min)``. Shifting by
    7.5 min would leave the grid, so the half-interval offset is documented, not converted.
``csv``
    ``interval_start`` (ISO 8601 with offset, or UTC) and ``pv_ac_kw`` [kW].

Slightly negative values (inverter standby draw at night, down to
:data:`NEGATIVE_TOLERANCE` of the AC rating) are clipped to 0 and flagged; more negative values
are quarantined as ``implausible_value``, as are values above :data:`MAX_OVER_CAPACITY` x AC
rating.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import polars as pl

from forecasting.config import SiteConfig
from forecasting.errors import InputFileError
from forecasting.ingest import solar_flags as flags
from forecasting.ingest.files import read_bytes
from forecasting.ingest.solar_sources import parse_iso_utc
from forecasting.ingest.weather import SolarRead, finish_read, read_text, split_duplicates
from forecasting.schemas import PV_SCHEMA, conform

PvFormat = Literal["pvdaq", "csv"]
PV_FORMATS: Final[tuple[str, ...]] = ("pvdaq", "csv")
NEGATIVE_TOLERANCE: Final = 0.02
"""Negative power down to this share of the AC rating is clipped to 0 [-]."""
MAX_OVER_CAPACITY: Final = 1.2
"""Power above this multiple of the AC rating is quarantined [-]."""

_LAYOUT: Final = {
    "pvdaq": ("measured_on", "ac_power", 1e-3),
    "csv": ("interval_start", "pv_ac_kw", 1.0),
}


def _parse(text: str, *, path: Path, fmt: PvFormat) -> pl.DataFrame:
    stamp_column, value_column, to_kw = _LAYOUT[fmt]
    cells = pl.read_csv(text.encode(), infer_schema=False).select(pl.all().str.strip_chars())
    cells = cells.filter(~pl.all_horizontal(pl.all().is_null() | (pl.all() == "")))
    missing = [c for c in (stamp_column, value_column) if c not in cells.columns]
    if missing:
        msg = (
            f"input file {path.name!r} lacks columns {missing!r} of --format {fmt}; "
            f"available: {cells.columns!r}. check --format"
        )
        raise InputFileError(msg)
    stamp = parse_iso_utc(pl.col(stamp_column))
    value = pl.col(value_column).cast(pl.Float64, strict=False) * to_kw
    return cells.with_row_index("row", offset=1).select(
        pl.col("row").cast(pl.Int64),
        stamp.alias("interval_start"),
        value.alias("pv_ac_kw"),
        pl.struct(cells.columns).struct.json_encode().alias("raw"),
        error_reason=pl.when(stamp.is_null())
        .then(pl.lit("unparseable_timestamp"))
        .when(value.is_null())
        .then(pl.lit("unparseable_value")),
        error_field=pl.when(stamp.is_null())
        .then(pl.lit(stamp_column))
        .when(value.is_null())
        .then(pl.lit(value_column)),
        error_value=pl.when(stamp.is_null())
        .then(pl.col(stamp_column))
        .when(value.is_null())
        .then(pl.col(value_column)),
    )


def _implausible(parsed: pl.DataFrame, *, ac_kw: float) -> pl.DataFrame:
    """Mark values far below zero or far above the AC rating as errors."""
    bad = (pl.col("pv_ac_kw") < -NEGATIVE_TOLERANCE * ac_kw) | (
        pl.col("pv_ac_kw") > MAX_OVER_CAPACITY * ac_kw
    )
    is_new = bad & pl.col("error_reason").is_null()
    return parsed.with_columns(
        error_reason=pl.when(is_new).then(pl.lit("implausible_value")).otherwise("error_reason"),
        error_field=pl.when(is_new).then(pl.lit("pv_ac_kw")).otherwise("error_field"),
        error_value=pl.when(is_new)
        .then(pl.col("pv_ac_kw").cast(pl.String))
        .otherwise("error_value"),
        detail=pl.when(is_new).then(
            pl.lit(f"outside [-{NEGATIVE_TOLERANCE} x, {MAX_OVER_CAPACITY} x] AC rating {ac_kw} kW")
        ),
    )


def read_pv(path: Path, *, site: SiteConfig, fmt: PvFormat, ingested_at: datetime) -> SolarRead:
    """Read one measured-PV file into accepted [kW] and quarantined rows.

    Parameters
    ----------
    path
        The file; non-UTF-8 or truncated files raise :class:`InputFileError`.
    site
        The site; its ``pv.ac_capacity_kw`` [kW] (or ``capacity_kw``) bounds plausible values.
    fmt
        ``pvdaq`` ([W], local time with offset) or ``csv`` ([kW]).
    ingested_at
        When the ingest runs [UTC].
    """
    data = read_bytes(path)
    text = read_text(path, data)
    ac_kw = site.pv.ac_limit_kw if site.pv else float("inf")
    parsed = _implausible(_parse(text, path=path, fmt=fmt), ac_kw=ac_kw)
    good = parsed.filter(pl.col("error_reason").is_null()).with_columns(
        issued_at=pl.lit(None, pl.Datetime("us", "UTC"))
    )
    unique, conflicts, exact = split_duplicates(good, key=("interval_start",), values=("pv_ac_kw",))
    resolution = flags.compute_resolution(unique)
    frame = flags.add_negative_clipping(unique.sort("interval_start"), columns=("pv_ac_kw",))
    frame = flags.add_gap_flags(frame, resolution=resolution)
    frame = flags.collect_flags(frame)
    accepted = conform(
        frame.with_columns(
            site_id=pl.lit(site.site_id),
            source=pl.format("{}:{}", pl.lit(path.name), "row"),
            ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        ),
        PV_SCHEMA,
    )
    bad = parsed.filter(pl.col("error_reason").is_not_null())
    return finish_read(
        accepted,
        pl.concat([bad, conflicts.drop("issued_at")], how="diagonal_relaxed"),
        rows_read=parsed.height,
        duplicates=exact,
        path=path,
        data=data,
        table="pv",
        ingested_at=ingested_at,
        missing_intervals=int(frame["missing_before"].sum()),
        resolution=resolution,
    )
