"""Entry point of session ingestion: one file in, accepted sessions and quarantine out.

>>> read = read_sessions(path, fmt="chargeplace", sites=sites, ingested_at=now)  # doctest: +SKIP
>>> read.summary.check_balance()  # accepted + quarantined + duplicates == rows read

Formats: ``chargeplace`` (ChargePlace Scotland CSV exports, bundled column map
``configs/sources/chargeplace.toml``), ``acn`` (ACN-Data JSON) and ``csv`` (any other CSV or
Parquet file through a column map, e.g. ``configs/sources/trondheim.toml``). Pure: no lake, no
clock; sessions already stored are passed in as ``known_sessions`` for the overlap check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import polars as pl

from forecasting.config import SitesConfig
from forecasting.errors import ConfigError
from forecasting.ingest.acn import stage_acn_sessions
from forecasting.ingest.column_map import ColumnMap, bundled_column_map, load_column_map
from forecasting.ingest.overlap import KNOWN_COLUMNS, find_all_overlaps
from forecasting.ingest.summary import IngestSummary
from forecasting.ingest.tabular import stage_tabular_sessions
from forecasting.ingest.validate_sessions import (
    SessionRules,
    add_attributes,
    add_row_violations,
    add_session_id,
    drop_exact_duplicates,
)
from forecasting.schemas import QUARANTINE_SCHEMA, SESSIONS_SCHEMA, UTC_DATETIME, conform

SessionFormat = Literal["chargeplace", "acn", "csv"]
SESSION_FORMATS: Final[tuple[str, ...]] = ("chargeplace", "acn", "csv")

DISCOVERED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "name": pl.String(),
    "timezone": pl.String(),
    "latitude": pl.Float64(),  # null when the source does not locate its sites
    "longitude": pl.Float64(),
    "source": pl.String(),  # file the site was first seen in
    "first_seen_at": UTC_DATETIME,  # ingested_at of that file
}
"""Sites found in data but not configured in sites.toml."""


@dataclass(frozen=True)
class SessionsRead:
    """What reading one session file gave.

    ``sessions`` is in SESSIONS_SCHEMA; ``quarantine`` in QUARANTINE_SCHEMA plus a nullable
    ``site_id`` (for per-site statistics); ``discovered_sites`` in :data:`DISCOVERED_SCHEMA`.
    """

    sessions: pl.DataFrame
    quarantine: pl.DataFrame
    summary: IngestSummary
    discovered_sites: pl.DataFrame


def _resolve_map(fmt: str, column_map: ColumnMap | Path | None) -> ColumnMap | None:
    if isinstance(column_map, Path):
        return load_column_map(column_map)
    if column_map is None and fmt == "chargeplace":
        return bundled_column_map("chargeplace")
    if column_map is None and fmt == "csv":
        msg = "format 'csv' needs a column map; pass --column-map configs/sources/<name>.toml"
        raise ConfigError(msg)
    return column_map


def _stage(path: Path, *, fmt: str, column_map: ColumnMap | None) -> pl.DataFrame:
    if fmt == "acn":
        return stage_acn_sessions(path)
    if fmt in {"chargeplace", "csv"} and column_map is not None:
        return stage_tabular_sessions(path, column_map=column_map)
    msg = f"unknown session format {fmt!r}; use one of {list(SESSION_FORMATS)!r}"
    raise ConfigError(msg)


def _rules(sites: SitesConfig, column_map: ColumnMap | None) -> SessionRules:
    rules = SessionRules(
        configured_sites=frozenset(s.site_id for s in sites.sites),
        strict=sites.strict,
        charger_models=dict(sites.charger_models),
    )
    if column_map is None:
        return rules
    return replace(
        rules,
        exclude_sites=frozenset(column_map.exclude_sites),
        max_duration_h=column_map.max_duration_h,
        energy_cap_kwh=column_map.energy_cap_kwh,
    )


def _quarantine_rows(frame: pl.DataFrame, *, file_name: str, ingested_at: datetime) -> pl.DataFrame:
    rows = frame.with_columns(
        table=pl.lit("sessions"), file=pl.lit(file_name), ingested_at=pl.lit(ingested_at)
    )
    return conform(rows, {**QUARANTINE_SCHEMA, "site_id": pl.String()})


def _discovered(
    sessions: pl.DataFrame,
    *,
    sites: SitesConfig,
    column_map: ColumnMap | None,
    file_name: str,
    ingested_at: datetime,
) -> pl.DataFrame:
    configured = [s.site_id for s in sites.sites]
    lat = column_map.latitude if column_map else None
    lon = column_map.longitude if column_map else None
    found = (
        sessions.filter(~pl.col("site_id").is_in(configured))
        .group_by("site_id", maintain_order=True)
        .agg(name=pl.col("site_name").first(), timezone=pl.col("site_timezone").first())
        .with_columns(
            latitude=pl.lit(lat, pl.Float64),
            longitude=pl.lit(lon, pl.Float64),
            source=pl.lit(file_name),
            first_seen_at=pl.lit(ingested_at),
        )
    )
    return conform(found, DISCOVERED_SCHEMA)


def read_sessions(
    path: Path,
    *,
    fmt: SessionFormat | str,
    sites: SitesConfig,
    ingested_at: datetime,
    column_map: ColumnMap | Path | None = None,
    known_sessions: pl.LazyFrame | pl.DataFrame | None = None,
) -> SessionsRead:
    """Read, parse and validate one session file.

    Parameters
    ----------
    path
        The input file.
    fmt
        ``chargeplace``, ``acn`` or ``csv``.
    sites
        Configured sites: charger models give ``max_power_kw`` [kW]; with ``strict`` unknown
        sites are quarantined, otherwise they are returned as ``discovered_sites``.
    ingested_at
        Timestamp of this ingest (tz-aware UTC), stored on every row.
    column_map
        Column map (object or TOML path); required for ``csv``, default for ``chargeplace``.
    known_sessions
        Sessions already accepted (e.g. the lake's ``sessions`` table), for the overlap check.

    Raises
    ------
    InputFileError
        When the file as a whole cannot be read (encoding, truncation, layout).
    """
    resolved = _resolve_map(fmt, column_map)
    staged = _stage(path, fmt=fmt, column_map=resolved)
    checked = add_session_id(add_row_violations(staged, rules=_rules(sites, resolved)))
    checked = checked.with_columns(source=pl.format("{}:{}", pl.lit(path.name), pl.col("row")))
    passing, duplicates = drop_exact_duplicates(checked.filter(pl.col("reason").is_null()))
    known = _known_for(known_sessions, passing)
    overlaps = find_all_overlaps(passing, known=known)
    overlapping = passing.drop("reason", "detail").join(overlaps, on="row", how="inner")
    accepted = passing.join(overlaps, on="row", how="anti")
    quarantined = pl.concat(
        [checked.filter(pl.col("reason").is_not_null()), overlapping], how="diagonal_relaxed"
    ).sort("row")
    sessions = conform(
        add_attributes(accepted).with_columns(ingested_at=pl.lit(ingested_at)), SESSIONS_SCHEMA
    )
    quarantine = _quarantine_rows(quarantined, file_name=path.name, ingested_at=ingested_at)
    summary = IngestSummary(
        files=[path.name],
        rows_read=staged.height,
        accepted=sessions.height,
        quarantined=quarantine.height,
        duplicates=duplicates,
        by_reason=Counter(quarantine["reason"].to_list()),
    )
    summary.check_balance()
    discovered = _discovered(
        accepted, sites=sites, column_map=resolved, file_name=path.name, ingested_at=ingested_at
    )
    return SessionsRead(sessions, quarantine, summary, discovered)


def _known_for(
    known_sessions: pl.LazyFrame | pl.DataFrame | None, passing: pl.DataFrame
) -> pl.DataFrame:
    schema = {c: SESSIONS_SCHEMA[c] for c in KNOWN_COLUMNS}
    if known_sessions is None:
        return pl.DataFrame(schema=schema)
    site_ids = passing["site_id"].unique().to_list()
    return (
        known_sessions.lazy()
        .filter(pl.col("site_id").is_in(site_ids))
        .select(list(KNOWN_COLUMNS))
        .collect()
    )
