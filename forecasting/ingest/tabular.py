"""Stage tabular session files (CSV or Parquet) through a column map.

Columns are found by *name*; unmapped columns go to the ``extras`` JSON; blank trailing header
columns are dropped. Texts are stripped and the map's null markers become nulls; a non-empty
text that does not parse (a date, a number) is kept for the ``unparseable_value`` rule.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Final

import polars as pl

from forecasting.errors import InputFileError
from forecasting.ingest.column_map import ColumnMap
from forecasting.ingest.files import check_csv_complete, decode_utf8, read_bytes
from forecasting.ingest.local_time import add_utc_session_times
from forecasting.ingest.validate_sessions import STAGED_SCHEMA

_BLANK_HEADER: Final = re.compile(r"^(|_duplicated_\d+)$")


def _read_frame(path: Path, *, column_map: ColumnMap) -> pl.DataFrame:
    data = read_bytes(path)
    try:
        if path.suffix.lower() == ".parquet":
            return _as_text(pl.read_parquet(io.BytesIO(data)), column_map=column_map)
        text = decode_utf8(data, path=path)
        check_csv_complete(text, path=path, delimiter=column_map.delimiter)
        return pl.read_csv(
            io.BytesIO(text.encode()), separator=column_map.delimiter, infer_schema=False
        )
    except pl.exceptions.PolarsError as exc:
        first_line = str(exc).splitlines()[0]
        msg = f"input file {path.name!r} cannot be read as a table: {first_line}; check its layout"
        raise InputFileError(msg) from exc


def _as_text(frame: pl.DataFrame, *, column_map: ColumnMap) -> pl.DataFrame:
    """Turn typed Parquet columns into the texts a CSV would hold.

    Date-times are written in the map's format, in its time zone (tz-aware columns are
    converted first, so their DST ambiguity is decided again by the module rule).
    """
    local = [
        pl.col(c).dt.convert_time_zone(column_map.timezone).dt.replace_time_zone(None)
        if getattr(t, "time_zone", None)
        else pl.col(c)
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime)
    ]
    texts = [e.dt.strftime(column_map.datetime_format) for e in local]
    decimal = [
        pl.col(c).cast(pl.String).str.replace(".", column_map.decimal, literal=True)
        for c, t in frame.schema.items()
        if t.is_float()
    ]
    return frame.with_columns(*texts, *decimal).with_columns(pl.all().cast(pl.String))


def _drop_blank_columns(frame: pl.DataFrame) -> pl.DataFrame:
    blank = [
        c
        for c in frame.columns
        if _BLANK_HEADER.match(c.strip()) and frame[c].null_count() == frame.height
    ]
    return frame.drop(blank)


def _check_columns(frame: pl.DataFrame, *, path: Path, column_map: ColumnMap) -> None:
    missing = [c for c in column_map.required_columns if c not in frame.columns]
    if missing:
        msg = (
            f"input file {path.name!r} lacks columns {missing!r} of column map "
            f"{column_map.name!r}; available: {frame.columns!r}. use the matching --format or "
            "--column-map"
        )
        raise InputFileError(msg)


def _joined(columns: tuple[str, ...] | None) -> pl.Expr:
    if columns is None:
        return pl.lit(None, pl.String)
    return pl.concat_str([pl.col(c) for c in columns], separator=" ")


def _column(name: str | None, frame: pl.DataFrame) -> pl.Expr:
    return pl.col(name) if name is not None and name in frame.columns else pl.lit(None, pl.String)


def _site_id(column_map: ColumnMap) -> pl.Expr:
    if column_map.site_id is not None:
        return pl.lit(column_map.site_id)
    slug = (
        _joined(column_map.site)
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9]+", "-")
        .str.strip_chars("-")
    )
    slug = pl.when(slug == "").then(None).otherwise(slug)
    aliased = slug.replace(dict(column_map.site_aliases))
    return pl.concat_str(pl.lit(column_map.site_id_prefix), aliased)


def _parse_texts(column_map: ColumnMap) -> list[pl.Expr]:
    fmt = column_map.datetime_format
    energy = pl.col("_energy_text")
    if column_map.decimal == ",":
        energy = energy.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return [
        pl.col(f"_{name}_text").str.strptime(pl.Datetime("us"), fmt, strict=False).alias(name)
        for name in ("plug_in_local", "plug_out_local", "charging_done_local")
    ] + [energy.cast(pl.Float64, strict=False).alias("energy_kwh")]


def _parse_failure(column: str, text: str) -> pl.Expr:
    return pl.col(text).is_not_null() & pl.col(column).is_null()


def _add_parse_errors(frame: pl.DataFrame) -> pl.DataFrame:
    pairs = [
        ("plug_in_at", "plug_in_local", "_plug_in_local_text"),
        ("plug_out_at", "plug_out_local", "_plug_out_local_text"),
        ("charging_done_at", "charging_done_local", "_charging_done_local_text"),
        ("energy_kwh", "energy_kwh", "_energy_text"),
    ]
    field = pl.coalesce(pl.when(_parse_failure(c, t)).then(pl.lit(f)) for f, c, t in pairs)
    value = pl.coalesce(pl.when(_parse_failure(c, t)).then(pl.col(t)) for _, c, t in pairs)
    return frame.with_columns(parse_field=field, parse_value=value)


def stage_tabular_sessions(path: Path, *, column_map: ColumnMap) -> pl.DataFrame:
    """Read one CSV or Parquet session file into :data:`STAGED_SCHEMA` rows (not validated).

    Raises
    ------
    InputFileError
        When the file is not UTF-8, is truncated, cannot be parsed as a table, or lacks a
        column the map requires; nothing of it is staged.
    """
    frame = _drop_blank_columns(_read_frame(path, column_map=column_map))
    _check_columns(frame, path=path, column_map=column_map)
    mapped = set(column_map.required_columns) | set(column_map.optional_columns)
    extra = [c for c in frame.columns if c not in mapped]
    nulls = list(column_map.null_values)
    raw = pl.struct(pl.all()).struct.json_encode()
    frame = frame.with_columns(_raw=raw).with_columns(
        pl.exclude("_raw").str.strip_chars().replace(nulls, None)
    )
    staged = frame.select(
        row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        raw=pl.col("_raw"),
        site_id=_site_id(column_map),
        site_name=_joined(column_map.site) if column_map.site else pl.lit(column_map.site_id),
        site_timezone=pl.lit(column_map.timezone),
        station_id=_joined(column_map.station_id),
        connector_id=_joined(column_map.connector_id) if column_map.connector_id else pl.lit("1"),
        _plug_in_local_text=_joined(column_map.plug_in_at),
        _plug_out_local_text=_joined(column_map.plug_out_at),
        _charging_done_local_text=_joined(column_map.charging_done_at),
        _energy_text=pl.col(column_map.energy_kwh),
        charger_model=_column(column_map.charger_model, frame),
        user_id=_column(column_map.user_id, frame),
        extras=pl.struct(extra).struct.json_encode() if extra else pl.lit(None, pl.String),
        flags=pl.lit([], dtype=pl.List(pl.String)),
    )
    staged = _add_parse_errors(staged.with_columns(_parse_texts(column_map)))
    staged = add_utc_session_times(staged, tz=column_map.timezone)
    return staged.select([pl.col(c).cast(t) for c, t in STAGED_SCHEMA.items()])
