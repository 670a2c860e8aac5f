"""Parsers of weather source formats into one intermediate frame, before validation.

Every parser returns a frame with the columns of :data:`PARSED_COLUMNS`: ``row`` (1 = first
data row), ``interval_start`` [UTC] (null when the stamp cannot be parsed), the weather values
(pvlib names, [W/m^2], [degC], [m/s], [%]; null when missing), ``issued_at``, the raw row as JSON
and the first problem of the row (``error_reason``, ``error_field``, ``error_value``).

Time labelling of each source, converted here to interval-start UTC:

* NSRDB PSM3/PSM4 (SAM CSV, via ``pvlib.iotools.read_nsrdb_psm4``): local *standard* time
  (the ``Time Zone`` offset of the header); stamps label the interval start; no shift.
  The same table without its two metadata lines (as in ``../shared/data/weather``) carries no
  offset: the site's standard offset is used unless ``utc_offset_hours`` is given.
* SERF East PSM3 resample (``measured_on`` column with its UTC offset): interval start.
* TMY3 (``pvlib.iotools.read_tmy3``): local standard time, hour *ending*: shifted -1 h.
* SURFRAD (``pvlib.iotools.read_surfrad``): UTC, 1-minute averages stamped at the *end* of
  the minute (the file's own solar zenith matches pvlib's at stamp - 30 s): shifted -1 min.
* Generic CSV: as its column map says (``label = "start" | "end"``).
"""

from __future__ import annotations

import io
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Final, Literal

import pandas as pd  # noqa: TID251 - pvlib readers return pandas
import polars as pl
import pvlib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.config import SiteConfig, load_toml
from forecasting.errors import ConfigError, InputFileError

VALUES: Final = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "cloud_cover")
PARSED_COLUMNS: Final = (
    "row",
    "interval_start",
    *VALUES,
    "issued_at",
    "raw",
    "error_reason",
    "error_field",
    "error_value",
)
NULL_STRINGS: Final = ("", "NA", "NaN", "nan", "null", "-9999", "-9999.0", "-9999.9")
_NSRDB_COLUMNS: Final = {
    "ghi": "GHI",
    "dni": "DNI",
    "dhi": "DHI",
    "temp_air": "Temperature",
    "wind_speed": "Wind Speed",
}
_STAMP_PARTS: Final = ("Year", "Month", "Day", "Hour", "Minute")


class WeatherColumnMap(BaseModel):
    """How to read a generic weather CSV (``configs/sources/weather_<name>.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_start: str = Field(description="Column of the interval's time stamp.")
    label: Literal["start", "end"] = Field(
        default="start", description="Whether a stamp labels the start or the end of its interval."
    )
    resolution_minutes: Annotated[int, Field(gt=0, le=1440)] = Field(
        default=60, description="Interval length, used when stamps label the end [min]."
    )
    datetime_format: str | None = Field(
        default=None, description="strftime format of the stamps; default: ISO 8601."
    )
    timezone: str = Field(default="UTC", description="IANA zone of stamps without an offset.")
    issued_at: str | None = Field(default=None, description="Column of the issue time.")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    ghi: str | None = Field(default=None, description="Column of GHI [W/m^2].")
    dni: str | None = Field(default=None, description="Column of DNI [W/m^2].")
    dhi: str | None = Field(default=None, description="Column of DHI [W/m^2].")
    temp_air: str | None = Field(default=None, description="Column of air temperature [degC].")
    wind_speed: str | None = Field(default=None, description="Column of wind speed [m/s].")
    cloud_cover: str | None = Field(default=None, description="Column of cloud cover [%].")

    def value_columns(self) -> dict[str, str]:
        """Canonical name -> source column, for the values this map names."""
        named = {name: getattr(self, name) for name in VALUES}
        return {k: v for k, v in named.items() if v is not None}


def load_weather_column_map(path: Path) -> WeatherColumnMap:
    """Load a weather column map TOML file, raising :class:`ConfigError` naming the file."""
    try:
        column_map = WeatherColumnMap.model_validate(load_toml(path))
        zoneinfo.ZoneInfo(column_map.timezone)
    except (ValidationError, zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"weather column map {str(path)!r} is invalid: {exc}"
        raise ConfigError(msg) from exc
    return column_map


def standard_utc_offset(site: SiteConfig) -> float:
    """UTC offset of the site's standard (winter) time [h], e.g. -7 for America/Denver."""
    zone = zoneinfo.ZoneInfo(site.timezone)
    january = datetime(2021, 1, 15, tzinfo=zone)
    offset = (january.utcoffset() or timedelta(0)) - (january.dst() or timedelta(0))
    return offset.total_seconds() / 3600


def _cells(text: str, *, skip_lines: int = 0, delimiter: str = ",") -> pl.DataFrame:
    """Read a delimited table as strings (nothing lost), dropping blank lines."""
    body = "\n".join(text.splitlines()[skip_lines:])
    frame = pl.read_csv(
        io.StringIO(body), infer_schema=False, separator=delimiter, truncate_ragged_lines=True
    )
    frame = frame.select(pl.all().str.strip_chars())
    return frame.filter(~pl.all_horizontal(pl.all().is_null() | (pl.all() == "")))


def _from_cells(
    cells: pl.DataFrame, *, stamp: pl.Expr, columns: dict[str, str], issued_at: pl.Expr | None
) -> pl.DataFrame:
    """Type the string cells; the first unparseable field of a row becomes its error."""
    raw = pl.struct(cells.columns).struct.json_encode()
    values = {
        name: pl.col(source).replace(list(NULL_STRINGS), [None] * len(NULL_STRINGS))
        for name, source in columns.items()
    }
    typed = {name: expr.cast(pl.Float64, strict=False) for name, expr in values.items()}
    checks: list[tuple[str, str, pl.Expr, pl.Expr]] = [
        ("unparseable_timestamp", "interval_start", stamp.is_null(), pl.lit(None, pl.String)),
    ]
    if issued_at is not None:
        checks.append(("unparseable_timestamp", "issued_at", issued_at.is_null(), pl.lit(None)))
    checks += [
        ("unparseable_value", columns[n], typed[n].is_null() & values[n].is_not_null(), values[n])
        for n in columns
    ]
    reason = pl.coalesce(pl.when(c).then(pl.lit(r)) for r, _, c, _ in checks)
    field = pl.coalesce(pl.when(c).then(pl.lit(f)) for _, f, c, _ in checks)
    value = pl.coalesce(pl.when(c).then(v.cast(pl.String)) for _, _, c, v in checks)
    frame = cells.with_row_index("row", offset=1).select(
        pl.col("row").cast(pl.Int64),
        stamp.alias("interval_start"),
        *(typed[n].alias(n) if n in typed else pl.lit(None, pl.Float64).alias(n) for n in VALUES),
        (issued_at if issued_at is not None else pl.lit(None)).alias("issued_at"),
        raw.alias("raw"),
        reason.alias("error_reason"),
        field.alias("error_field"),
        value.alias("error_value"),
    )
    return frame.with_columns(
        pl.col("interval_start", "issued_at").cast(pl.Datetime("us", "UTC")),
        error_value=pl.when(pl.col("error_reason").is_not_null()).then(
            pl.col("error_value").fill_null(pl.col("raw").str.slice(0, 200))
        ),
    )


def _naive_to_utc(naive: pl.Expr, *, offset_hours: float) -> pl.Expr:
    """Naive local standard time with a fixed offset [h] to UTC."""
    shifted = naive - pl.duration(minutes=round(offset_hours * 60))
    return shifted.dt.replace_time_zone("UTC")


def _from_pandas(data: pd.DataFrame, *, shift: timedelta, columns: dict[str, str]) -> pl.DataFrame:
    """Frame of a pvlib reader (tz-aware index) to the parsed layout."""
    index = pd.DatetimeIndex(data.index).tz_convert("UTC").tz_localize(None)
    frame = pl.DataFrame({c: data[c].to_numpy(dtype=float) for c in columns.values()})
    cells = frame.with_columns(pl.all().fill_nan(None).cast(pl.String))
    stamps = pl.Series("stamp", index.to_numpy()).cast(pl.Datetime("us"))
    stamp = (pl.lit(stamps) + shift).dt.replace_time_zone("UTC")
    return _from_cells(cells, stamp=stamp, columns=columns, issued_at=None)


def parse_nsrdb(
    text: str, *, path: Path, site: SiteConfig, utc_offset_hours: float | None = None
) -> pl.DataFrame:
    """Parse an NSRDB PSM3/PSM4 file: SAM CSV, its table without header, or SERF's resample."""
    first = text.split("\n", 1)[0]
    if first.startswith("Source"):
        try:
            data, _ = pvlib.iotools.read_nsrdb_psm4(io.StringIO(text))
        except (ValueError, KeyError, IndexError):
            # a bad cell makes pvlib's typed read fail: parse tolerantly, cell by cell
            offset = _sam_offset(text, path=path)
            return _parse_nsrdb_table(text, skip_lines=2, offset_hours=offset)
        mapped: dict[str, str] = {n: n for n in _NSRDB_COLUMNS if n in data.columns}
        return _from_pandas(data, shift=timedelta(0), columns=mapped)
    header = first.split(",")
    if "measured_on" in header:
        cells = _cells(text)
        stamp = pl.col("measured_on").str.to_datetime("%Y-%m-%d %H:%M:%S%:z", strict=False)
        columns: dict[str, str] = {c: c for c in _NSRDB_COLUMNS if c in header}
        return _from_cells(
            cells, stamp=stamp.dt.convert_time_zone("UTC"), columns=columns, issued_at=None
        )
    if all(part in header for part in _STAMP_PARTS):
        offset = utc_offset_hours if utc_offset_hours is not None else standard_utc_offset(site)
        return _parse_nsrdb_table(text, skip_lines=0, offset_hours=offset)
    msg = (
        f"input file {path.name!r} is not an NSRDB file: its first line {first[:80]!r} has "
        "neither SAM CSV metadata nor Year/Month/Day/Hour/Minute nor measured_on columns; "
        "check --format"
    )
    raise InputFileError(msg)


def _sam_offset(text: str, *, path: Path) -> float:
    lines = text.splitlines()
    meta = dict(zip(lines[0].split(","), lines[1].split(","), strict=False))
    try:
        return float(meta["Time Zone"])
    except (KeyError, ValueError) as exc:
        msg = f"input file {path.name!r} has no readable 'Time Zone' in its metadata lines"
        raise InputFileError(msg) from exc


def _parse_nsrdb_table(text: str, *, skip_lines: int, offset_hours: float) -> pl.DataFrame:
    cells = _cells(text, skip_lines=skip_lines)
    parts = [pl.col(p).str.zfill(2) for p in _STAMP_PARTS]
    joined = pl.format("{}-{}-{} {}:{}", *parts)
    naive = joined.str.to_datetime("%Y-%m-%d %H:%M", strict=False)
    columns = {k: v for k, v in _NSRDB_COLUMNS.items() if v in cells.columns}
    return _from_cells(
        cells,
        stamp=_naive_to_utc(naive, offset_hours=offset_hours),
        columns=columns,
        issued_at=None,
    )


TMY_YEAR: Final = 1990
"""A typical year's months come from different years; they are all set to this (non-leap) one."""


def parse_tmy3(text: str, *, path: Path) -> pl.DataFrame:
    """Parse a TMY3 file with pvlib; hour-ending stamps become interval starts in TMY_YEAR."""
    try:
        data, _ = pvlib.iotools.read_tmy3(
            io.StringIO(text), coerce_year=TMY_YEAR, map_variables=True
        )
    except (ValueError, KeyError, IndexError) as exc:
        msg = f"input file {path.name!r} is not a readable TMY3 file: {exc}; check --format"
        raise InputFileError(msg) from exc
    data["cloud_cover"] = data["TotCld (tenths)"].astype(float) * 10.0
    columns = {n: n for n in VALUES}
    return _from_pandas(data, shift=-timedelta(hours=1), columns=columns)


def parse_surfrad(text: str, *, path: Path) -> pl.DataFrame:
    """Parse a SURFRAD daily file with pvlib; end-of-minute stamps become interval starts."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) > 3 and len(lines[-1].split()) < len(lines[-2].split()):
        msg = (
            f"input file {path.name!r} looks truncated: its last line (line {len(lines)}) has "
            f"{len(lines[-1].split())} of {len(lines[-2].split())} fields; fetch it again"
        )
        raise InputFileError(msg)
    try:
        data, _ = pvlib.iotools.read_surfrad(str(path))
    except (ValueError, KeyError, IndexError) as exc:
        msg = f"input file {path.name!r} is not a readable SURFRAD file: {exc}; check --format"
        raise InputFileError(msg) from exc
    columns = {n: n for n in ("ghi", "dni", "dhi", "temp_air", "wind_speed")}
    return _from_pandas(data, shift=-timedelta(minutes=1), columns=columns)


def parse_iso_utc(text: pl.Expr, *, timezone: str = "UTC") -> pl.Expr:
    """ISO 8601 stamps to UTC; stamps without an offset are in ``timezone``; bad ones null.

    Formats are listed explicitly: polars' format inference takes the first value's format and
    does not cope with a later value in another one.
    """
    s = text.str.strip_chars().str.replace("T", " ").str.replace("Z$", "+00:00")
    aware = pl.coalesce(
        s.str.to_datetime(f, strict=False) for f in ("%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M%:z")
    )
    naive = pl.coalesce(
        s.str.to_datetime(f, strict=False) for f in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")
    )
    local = naive.dt.replace_time_zone(timezone, ambiguous="null", non_existent="null")
    return pl.coalesce(aware.dt.convert_time_zone("UTC"), local.dt.convert_time_zone("UTC"))


def _parse_stamp(column: str, column_map: WeatherColumnMap) -> pl.Expr:
    text = pl.col(column)
    fmt = column_map.datetime_format
    has_offset = fmt is not None and "%z" in fmt.replace("%:z", "%z")
    if fmt is None:
        parsed = parse_iso_utc(text, timezone=column_map.timezone)
    elif has_offset:
        parsed = text.str.to_datetime(fmt, strict=False).dt.convert_time_zone("UTC")
    else:
        naive = text.str.to_datetime(fmt, strict=False)
        parsed = naive.dt.replace_time_zone(
            column_map.timezone, ambiguous="null", non_existent="null"
        ).dt.convert_time_zone("UTC")
    return parsed


def parse_weather_csv(text: str, *, path: Path, column_map: WeatherColumnMap) -> pl.DataFrame:
    """Parse a generic weather CSV with a column map (forecasts carry an ``issued_at``)."""
    cells = _cells(text, delimiter=column_map.delimiter)
    needed = [column_map.interval_start, *column_map.value_columns().values()]
    if column_map.issued_at:
        needed.append(column_map.issued_at)
    missing = [c for c in needed if c not in cells.columns]
    if missing:
        msg = (
            f"input file {path.name!r} lacks columns {missing!r} named by the column map; "
            f"available: {cells.columns!r}. fix the map or the file"
        )
        raise InputFileError(msg)
    stamp = _parse_stamp(column_map.interval_start, column_map)
    if column_map.label == "end":
        stamp = stamp - timedelta(minutes=column_map.resolution_minutes)
    issued = _parse_stamp(column_map.issued_at, column_map) if column_map.issued_at else None
    return _from_cells(cells, stamp=stamp, columns=column_map.value_columns(), issued_at=issued)
