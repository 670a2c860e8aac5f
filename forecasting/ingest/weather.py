"""Weather ingestion: NSRDB PSM3/PSM4, TMY3, SURFRAD and generic CSV files to the weather table.

:func:`read_weather` turns one file into accepted rows (:data:`WEATHER_SCHEMA`, flagged per
row), quarantined rows (unparseable stamps or values, conflicting duplicates) and a balanced
:class:`IngestSummary`. Storing them is the CLI's job (``evcast ingest weather``) through
:mod:`forecasting.io.lake` and :mod:`forecasting.io.quarantine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import polars as pl

from features.solar_geometry import add_decomposed_irradiance
from forecasting.config import SiteConfig
from forecasting.errors import InputFileError
from forecasting.ingest import solar_flags as flags
from forecasting.ingest import solar_sources as sources
from forecasting.ingest.files import (
    check_csv_complete,
    compute_content_hash,
    decode_utf8,
    read_bytes,
)
from forecasting.ingest.summary import IngestSummary
from forecasting.schemas import QUARANTINE_SCHEMA, WEATHER_SCHEMA, WeatherKind, conform

WeatherFormat = Literal["psm3", "psm4", "tmy3", "surfrad", "csv"]
WEATHER_FORMATS: Final[tuple[str, ...]] = ("psm3", "psm4", "tmy3", "surfrad", "csv")


@dataclass
class SolarRead:
    """What reading one weather or PV file produced."""

    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    summary: IngestSummary
    content_hash: str
    missing_intervals: int = 0
    resolution: timedelta = timedelta(minutes=15)
    flag_counts: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, object]:
        """Return the summary plus gap and flag counts, JSON-ready."""
        return {
            **self.summary.to_dict(),
            "missing_intervals": self.missing_intervals,
            "resolution_minutes": self.resolution.total_seconds() / 60,
            "flags": dict(sorted(self.flag_counts.items())),
        }


def read_text(path: Path, data: bytes, *, delimiter: str = ",") -> str:
    """Decode a whole input file, rejecting non-UTF-8 or truncated files with InputFileError."""
    text = decode_utf8(data, path=path)
    if text.lstrip().startswith(("{", "[")) or "\x00" in text:
        msg = f"input file {path.name!r} is not a delimited text file; check --format"
        raise InputFileError(msg)
    check_csv_complete(text, path=path, delimiter=delimiter)
    return text


def build_quarantine(
    rows: pl.DataFrame, *, table: str, file: str, ingested_at: datetime
) -> pl.DataFrame:
    """Quarantine rows from parsed rows with ``row``, ``raw`` and ``error_*``/``detail``."""
    if "detail" not in rows.columns:
        rows = rows.with_columns(detail=pl.lit(None, pl.String))
    rows = rows.rechunk()  # polars 2.1 panics in pl.format over multi-chunk string columns
    frame = rows.select(
        table=pl.lit(table),
        reason=pl.col("error_reason"),
        file=pl.lit(file),
        row=pl.col("row"),
        field=pl.col("error_field"),
        value=pl.col("error_value"),
        detail=pl.coalesce(
            "detail",
            pl.format(
                "row {} of {}: cannot parse {} value {}",
                "row",
                pl.lit(file),
                "error_field",
                "error_value",
            ),
        ),
        raw=pl.col("raw"),
        ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
    )
    return frame.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])


def split_duplicates(
    parsed: pl.DataFrame, *, key: tuple[str, ...], values: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split parsed rows into unique rows, conflicting repeats (to quarantine) and exact repeats.

    The first row of a key wins. A later row with the same key and the same values is an exact
    duplicate (counted, dropped); with different values it is quarantined as
    ``conflicting_duplicate`` naming the first row.
    """
    ranked = parsed.with_columns(
        _first=pl.col("row").first().over(key), _same=pl.struct(values).hash(seed=0)
    )
    first_same = pl.col("_same").first().over(key)
    unique = ranked.filter(pl.col("row") == pl.col("_first"))
    exact = ranked.filter((pl.col("row") != pl.col("_first")) & (pl.col("_same") == first_same))
    conflict = ranked.filter((pl.col("row") != pl.col("_first")) & (pl.col("_same") != first_same))
    conflict = conflict.with_columns(
        error_reason=pl.lit("conflicting_duplicate"),
        error_field=pl.lit("interval_start"),
        error_value=pl.col("interval_start").dt.to_string("%Y-%m-%dT%H:%M:%S%:z"),
        detail=pl.format("same interval as row {} but different values", "_first"),
    )
    drop = ["_first", "_same"]
    return unique.drop(drop), conflict.drop(drop), exact.height


def _parse(
    path: Path,
    text: str,
    *,
    fmt: WeatherFormat,
    site: SiteConfig,
    column_map: sources.WeatherColumnMap | None,
    utc_offset_hours: float | None,
) -> pl.DataFrame:
    if fmt in ("psm3", "psm4"):
        return sources.parse_nsrdb(text, path=path, site=site, utc_offset_hours=utc_offset_hours)
    if fmt == "tmy3":
        return sources.parse_tmy3(text, path=path)
    if fmt == "surfrad":
        return sources.parse_surfrad(text, path=path)
    if column_map is None:
        msg = f"--format csv needs --column-map to read {path.name!r}; see configs/sources/"
        raise InputFileError(msg)
    return sources.parse_weather_csv(text, path=path, column_map=column_map)


def add_weather_flags(
    frame: pl.DataFrame, *, site: SiteConfig, resolution: timedelta, convert_kw: bool
) -> pl.DataFrame:
    """Apply every weather rule to unique, parsed rows and gather the ``flags`` list.

    ``frame`` needs ``interval_start`` [UTC], ``issued_at``, ``ghi``, ``dni``, ``dhi``
    [W/m^2]. Missing DNI/DHI are decomposed from GHI (Erbs) and flagged.
    """
    frame = frame.sort("issued_at", "interval_start", nulls_last=False)
    frame = flags.add_sky_columns(frame, site=site, resolution=resolution)
    frame = flags.add_unit_flags(frame, site=site, convert=convert_kw)
    frame = flags.add_negative_clipping(frame, columns=("ghi", "dni", "dhi"))
    frame = flags.add_gap_flags(frame, resolution=resolution)
    frame = flags.add_stale_flags(frame, resolution=resolution)
    frame = flags.add_sky_flags(frame)
    if frame["dni"].null_count() or frame["dhi"].null_count():
        frame = add_decomposed_irradiance(frame).rename({"decomposed": flags.DECOMPOSED})
    return flags.collect_flags(frame)


def _require_issue(parsed: pl.DataFrame) -> pl.DataFrame:
    """Mark forecast rows without an ``issued_at`` as errors."""
    missing = pl.col("issued_at").is_null()
    return parsed.with_columns(
        error_reason=pl.coalesce(
            "error_reason", pl.when(missing).then(pl.lit("missing_issued_at"))
        ),
        error_field=pl.coalesce("error_field", pl.when(missing).then(pl.lit("issued_at"))),
    )


def read_weather(
    path: Path,
    *,
    site: SiteConfig,
    fmt: WeatherFormat,
    ingested_at: datetime,
    kind: WeatherKind = "observation",
    column_map: sources.WeatherColumnMap | None = None,
    convert_kw: bool = False,
    utc_offset_hours: float | None = None,
) -> SolarRead:
    """Read one weather file into accepted and quarantined rows.

    Parameters
    ----------
    path
        The file. Non-UTF-8, truncated or unrecognisable files raise :class:`InputFileError`.
    site
        The site the weather is for; its location drives the clear-sky and night checks.
    fmt
        Source format; see :mod:`forecasting.ingest.solar_sources` for each one's time labels.
    ingested_at
        When the ingest runs [UTC], written to every row.
    kind
        ``observation``, or ``forecast`` (rows need an ``issued_at``, from a CSV column map).
    column_map
        Required for ``fmt="csv"``.
    convert_kw
        Multiply irradiance of days that look like [kW/m^2] by 1000 (otherwise only flag).
    utc_offset_hours
        UTC offset [h] of NSRDB tables that lack their metadata lines (default: the site's
        standard time).
    """
    data = read_bytes(path)
    text = read_text(path, data, delimiter=column_map.delimiter if column_map else ",")
    parsed = _parse(
        path, text, fmt=fmt, site=site, column_map=column_map, utc_offset_hours=utc_offset_hours
    )
    if kind == "forecast":
        parsed = _require_issue(parsed)
    bad = parsed.filter(pl.col("error_reason").is_not_null())
    good = parsed.filter(pl.col("error_reason").is_null())
    unique, conflicts, exact = split_duplicates(
        good, key=("issued_at", "interval_start"), values=sources.VALUES
    )
    resolution = flags.compute_resolution(unique)
    flagged = add_weather_flags(unique, site=site, resolution=resolution, convert_kw=convert_kw)
    accepted = conform(
        flagged.with_columns(
            site_id=pl.lit(site.site_id),
            kind=pl.lit(kind),
            source=pl.format("{}:{}", pl.lit(path.name), "row"),
            ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        ).sort("interval_start", "issued_at"),
        WEATHER_SCHEMA,
    )
    return finish_read(
        accepted,
        pl.concat([bad, conflicts], how="diagonal_relaxed"),
        rows_read=parsed.height,
        duplicates=exact,
        path=path,
        data=data,
        table="weather",
        ingested_at=ingested_at,
        missing_intervals=int(flagged["missing_before"].sum()),
        resolution=resolution,
    )


def finish_read(
    accepted: pl.DataFrame,
    rejected: pl.DataFrame,
    *,
    rows_read: int,
    duplicates: int,
    path: Path,
    data: bytes,
    table: str,
    ingested_at: datetime,
    missing_intervals: int,
    resolution: timedelta,
) -> SolarRead:
    """Build the quarantine rows and the balanced summary of one read file."""
    quarantined = build_quarantine(rejected, table=table, file=path.name, ingested_at=ingested_at)
    summary = IngestSummary(
        files=[str(path)],
        rows_read=rows_read,
        accepted=accepted.height,
        quarantined=quarantined.height,
        duplicates=duplicates,
    )
    summary.by_reason.update(quarantined["reason"].to_list())
    summary.check_balance()
    return SolarRead(
        accepted=accepted,
        quarantined=quarantined,
        summary=summary,
        content_hash=compute_content_hash(data),
        missing_intervals=missing_intervals,
        resolution=resolution,
        flag_counts=flags.count_flags(accepted),
    )
