"""Canonical tables of evcast: column names, polars types, units and time conventions.

Glossary
--------
Time
    Every timestamp inside the pipeline is timezone-aware UTC (``Datetime("us", "UTC")``).
    Site-local time (the site's IANA zone) appears only at the edges: parsing source files,
    calendar features, display. An interval is labelled by its start (``interval_start``) and
    covers ``[interval_start, interval_start + resolution)``.
``issued_at``
    The instant a forecast was made. A forecast may use only data known strictly before it:
    sessions that ended before ``issued_at``, weather forecasts issued before it.
Energy and power
    ``energy_kwh`` [kWh] energy delivered in an interval or session; ``power_kw`` [kW] average
    power over an interval; ``pv_ac_kw`` [kW] average AC power of a PV system (positive when
    producing); ``capacity_kw`` / ``grid_limit_kw`` [kW] ratings.
Weather (pvlib's names, so frames pass straight into pvlib)
    ``ghi``, ``dni``, ``dhi`` [W/m^2] global horizontal, direct normal and diffuse horizontal
    irradiance, average over the interval; ``temp_air`` [degC] air temperature at 2 m;
    ``wind_speed`` [m/s] at 10 m; ``cloud_cover`` [%] total cloud cover, 0-100.
Quantiles
    ``p10``, ``p50``, ``p90``: the 10th, 50th and 90th percentiles of the forecast distribution,
    in the unit of the target they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import polars as pl

from forecasting.errors import SchemaError

UTC_DATETIME: Final = pl.Datetime("us", "UTC")

WeatherKind = Literal["observation", "forecast"]
WEATHER_KINDS: Final[tuple[str, ...]] = ("observation", "forecast")

SESSIONS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "station_id": pl.String(),
    "connector_id": pl.String(),
    "session_id": pl.String(),
    "plug_in_at": UTC_DATETIME,
    "plug_out_at": UTC_DATETIME,
    "charging_done_at": UTC_DATETIME,  # optional: null when the source does not know
    "energy_kwh": pl.Float64(),
    "max_power_kw": pl.Float64(),  # optional: rated power of the charger [kW]
    "user_id": pl.String(),  # optional
    "attributes": pl.String(),  # optional: source-specific fields as a JSON object
    "source": pl.String(),  # "<file name>:<row number>", row 1 is the first data row
    "ingested_at": UTC_DATETIME,
}
"""One row per accepted charging session."""

SESSIONS_KEY: Final[tuple[str, ...]] = ("site_id", "session_id")

WEATHER_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "interval_start": UTC_DATETIME,
    "ghi": pl.Float64(),
    "dni": pl.Float64(),
    "dhi": pl.Float64(),
    "temp_air": pl.Float64(),
    "wind_speed": pl.Float64(),
    "cloud_cover": pl.Float64(),  # optional
    "kind": pl.String(),  # one of WEATHER_KINDS
    "issued_at": UTC_DATETIME,  # null for observations; when the forecast was issued
    "flags": pl.List(pl.String()),  # quality flags of the row; empty when clean
    "source": pl.String(),
    "ingested_at": UTC_DATETIME,
}
"""Weather per site and interval; observations and forecasts as issued."""

WEATHER_KEY: Final[tuple[str, ...]] = ("site_id", "kind", "issued_at", "interval_start")

PV_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "interval_start": UTC_DATETIME,
    "pv_ac_kw": pl.Float64(),
    "flags": pl.List(pl.String()),
    "source": pl.String(),
    "ingested_at": UTC_DATETIME,
}
"""Measured AC power of a site's PV system, average over the interval [kW]."""

PV_KEY: Final[tuple[str, ...]] = ("site_id", "interval_start")

QUARANTINE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "table": pl.String(),  # sessions | weather | pv
    "reason": pl.String(),  # a reason code, see forecasting.ingest.validate
    "file": pl.String(),
    "row": pl.Int64(),  # 1 = first data row of the file; null for whole-file rejections
    "field": pl.String(),
    "value": pl.String(),
    "detail": pl.String(),  # human-readable explanation, names related rows where relevant
    "raw": pl.String(),  # the raw input row as JSON, so nothing is lost
    "ingested_at": UTC_DATETIME,
}
"""Rows that were read but not accepted, with the reason."""

DEMAND_SERIES_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "interval_start": UTC_DATETIME,
    "energy_kwh": pl.Float64(),
    "power_kw": pl.Float64(),
    "occupied_connectors": pl.Float64(),
    "arrivals": pl.UInt32(),
    "is_missing": pl.Boolean(),
}
"""Per-site demand on a complete interval grid (zeros included; outages marked missing)."""

FORECAST_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "issued_at": UTC_DATETIME,
    "interval_start": UTC_DATETIME,
    "p10": pl.Float64(),
    "p50": pl.Float64(),
    "p90": pl.Float64(),
    "model": pl.String(),
    "note": pl.String(),  # null, or why this row is a fallback / what stood in for what
}
"""Quantile forecasts of one target, in the target's unit (energy targets: [kWh] per interval)."""

FORECAST_KEY: Final[tuple[str, ...]] = ("site_id", "model", "issued_at", "interval_start")

OPTIONAL_COLUMNS: Final[frozenset[str]] = frozenset(
    {
        "charging_done_at",
        "max_power_kw",
        "user_id",
        "attributes",
        "cloud_cover",
        "issued_at",
        "note",
    }
)
"""Columns that may hold nulls in every schema that has them."""


def empty_frame(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Return an empty frame with exactly the columns and types of ``schema``."""
    return pl.DataFrame(schema=dict(schema))


def validate_frame(
    frame: pl.DataFrame | pl.LazyFrame, schema: Mapping[str, pl.DataType], *, name: str
) -> None:
    """Check that ``frame`` has every column of ``schema`` with the right type.

    Extra columns are allowed. Raises :class:`SchemaError` listing the missing and the
    available columns, or the columns whose type differs.
    """
    actual = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    missing = [column for column in schema if column not in actual]
    if missing:
        msg = (
            f"{name} frame is missing columns {missing!r}; available: {list(actual)!r}. "
            "build it with the matching reader or forecasting.schemas.conform"
        )
        raise SchemaError(msg)
    wrong = {
        column: (str(actual[column]), str(dtype))
        for column, dtype in schema.items()
        if actual[column] != dtype
    }
    if wrong:
        detail = ", ".join(f"{c!r} is {a} (expected {e})" for c, (a, e) in wrong.items())
        msg = f"{name} frame has columns of the wrong type: {detail}; cast them before use"
        raise SchemaError(msg)


def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select the columns of ``schema`` in order, adding missing optional ones as nulls.

    Raises :class:`SchemaError` when a required (non-optional) column is missing.
    """
    missing = [c for c in schema if c not in frame.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        msg = (
            f"cannot conform frame: required columns {missing!r} are missing; got {frame.columns!r}"
        )
        raise SchemaError(msg)
    return frame.select(
        pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
        for c, t in schema.items()
    )
