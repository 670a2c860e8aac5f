"""Stage ACN-Data sessions (Caltech Adaptive Charging Network API exports, JSON).

The file is a JSON list of session objects (or the API's page object with an ``_items`` list).
Times are RFC 1123 strings in GMT; ``doneChargingTime`` may be null; ``userInputs`` (nested) and
the source's ids are kept as JSON in ``attributes``. Each ACN station is one EVSE with one
connector, so ``connector_id`` is ``"1"``. Site ids follow :data:`ACN_SITE_IDS`, others become
``acn-<siteID>``; the source's ``timezone`` field is the site's zone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import polars as pl

from forecasting.errors import InputFileError
from forecasting.ingest.files import decode_utf8, read_bytes
from forecasting.ingest.validate_sessions import STAGED_SCHEMA

ACN_SITE_IDS: Final[Mapping[str, str]] = {"0001": "acn-jpl", "0002": "acn-caltech"}
"""ACN ``siteID`` -> evcast site id (Caltech is 0002, JPL 0001 in ACN-Data)."""

RFC1123_GMT: Final = "%a, %d %b %Y %H:%M:%S GMT"
_EXTRAS: Final = ("sessionID", "clusterID", "spaceID", "userInputs")
_ITEM_SCHEMA: Final[dict[str, pl.DataType]] = {
    "row": pl.Int64(),
    "raw": pl.String(),
    "site_id": pl.String(),
    "site_name": pl.String(),
    "site_timezone": pl.String(),
    "station_id": pl.String(),
    "connector_id": pl.String(),
    "plug_in_at": pl.String(),
    "plug_out_at": pl.String(),
    "charging_done_at": pl.String(),
    "energy_kwh": pl.Float64(),
    "user_id": pl.String(),
    "extras": pl.String(),
    "parse_value": pl.String(),
}
"""Columns of one staged item before its times are parsed (times still text)."""
_TIMES: Final = {
    "plug_in_at": "connectionTime",
    "plug_out_at": "disconnectTime",
    "charging_done_at": "doneChargingTime",
}


def _load_items(path: Path) -> list[dict[str, object]]:
    text = decode_utf8(read_bytes(path), path=path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"input file {path.name!r} is not complete JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); it may be truncated, fetch it again"
        )
        raise InputFileError(msg) from exc
    items = document.get("_items") if isinstance(document, dict) else document
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        msg = (
            f"input file {path.name!r} is not an ACN-Data export: expected a JSON list of "
            "session objects (or an object with '_items'); use --format csv for other files"
        )
        raise InputFileError(msg)
    return items


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _energy(value: object) -> tuple[float | None, str | None]:
    if value is None or isinstance(value, bool):
        return None, _text(value)
    try:
        return float(value), None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, str(value)


def _stage_item(item: Mapping[str, object], row: int) -> dict[str, object]:
    site = _text(item.get("siteID"))
    energy, bad_energy = _energy(item.get("kWhDelivered"))
    extras = {k: item[k] for k in _EXTRAS if k in item}
    return {
        "row": row,
        "raw": json.dumps(item, ensure_ascii=False),
        "site_id": None if site is None else ACN_SITE_IDS.get(site, f"acn-{site.lower()}"),
        "site_name": None if site is None else f"ACN-Data site {site}",
        "site_timezone": _text(item.get("timezone")),
        "station_id": _text(item.get("stationID")),
        "connector_id": "1",
        **{name: _text(item.get(key)) for name, key in _TIMES.items()},
        "energy_kwh": energy,
        "user_id": _text(item.get("userID")),
        "extras": json.dumps(extras, ensure_ascii=False) if extras else None,
        "parse_value": bad_energy,
    }


def _add_parse_errors(frame: pl.DataFrame) -> pl.DataFrame:
    parsed = {
        n: pl.col(n).str.strptime(pl.Datetime("us", "UTC"), RFC1123_GMT, strict=False)
        for n in _TIMES
    }
    failed = {n: pl.col(n).is_not_null() & e.is_null() for n, e in parsed.items()}
    field = pl.coalesce(
        pl.when(pl.col("parse_value").is_not_null()).then(pl.lit("energy_kwh")),
        *(pl.when(f).then(pl.lit(n)) for n, f in failed.items()),
    )
    value = pl.coalesce(
        pl.col("parse_value"), *(pl.when(f).then(pl.col(n)) for n, f in failed.items())
    )
    return frame.with_columns(parse_field=field, parse_value=value).with_columns(**parsed)


def stage_acn_sessions(path: Path) -> pl.DataFrame:
    """Read one ACN-Data JSON export into :data:`STAGED_SCHEMA` rows (not validated).

    Raises
    ------
    InputFileError
        When the file is not UTF-8, not complete JSON, or not a list of session objects.
    """
    items = _load_items(path)
    rows = [_stage_item(item, row) for row, item in enumerate(items, start=1)]
    frame = _add_parse_errors(pl.DataFrame(rows, schema=_ITEM_SCHEMA))
    frame = frame.with_columns(
        charger_model=pl.lit(None, pl.String), flags=pl.lit([], dtype=pl.List(pl.String))
    )
    return frame.select([pl.col(c).cast(t) for c, t in STAGED_SCHEMA.items()])
