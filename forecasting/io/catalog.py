"""The site catalog and the storing of ingested sessions.

Lake tables written here (besides ``sessions``):

``sites``
    Sites found in session data but not configured in ``sites.toml`` ("discovered"): site id,
    name as the source spells it, the source's time zone, coordinates when the source gives
    them, the file and ingest time where the site was first seen. Rows are only ever added.
``session_ingests``
    Accepted and quarantined rows per site and input file (by content hash), for
    ``evcast sites``; re-ingesting a file rewrites its own rows, so counts are not doubled.

:func:`load_site_catalog` gives configured plus discovered sites as :class:`SiteConfig`.
Discovered sites without coordinates get latitude = longitude = 0 (``SiteConfig`` requires
numbers): they carry no PV system, so nothing computes sun positions for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from forecasting.config import SiteConfig, SitesConfig, load_sites
from forecasting.ingest.column_map import ColumnMap
from forecasting.ingest.files import compute_content_hash, read_bytes
from forecasting.ingest.sessions import DISCOVERED_SCHEMA, SessionsRead, read_sessions
from forecasting.io.lake import UpsertResult, read_table, upsert_table
from forecasting.io.quarantine import write_quarantine
from forecasting.schemas import SESSIONS_KEY, SESSIONS_SCHEMA, UTC_DATETIME
from forecasting.settings import Settings

SITES_TABLE: Final = "sites"
SESSIONS_TABLE: Final = "sessions"
INGESTS_TABLE: Final = "session_ingests"

INGESTS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "site_id": pl.String(),
    "content_hash": pl.String(),
    "file": pl.String(),
    "accepted": pl.Int64(),
    "quarantined": pl.Int64(),
    "ingested_at": UTC_DATETIME,
}
"""Rows per site and input file: accepted and quarantined (rows without a site are left out)."""


@dataclass(frozen=True)
class StoredRead:
    """What storing one read did."""

    sessions: UpsertResult
    quarantine_file: Path | None
    new_sites: tuple[str, ...]


def read_discovered_sites(lake_dir: Path) -> pl.DataFrame:
    """Return the discovered-sites table (:data:`DISCOVERED_SCHEMA`), empty when absent."""
    return read_table(lake_dir, SITES_TABLE, DISCOVERED_SCHEMA).collect()


def record_discovered_sites(lake_dir: Path, discovered: pl.DataFrame) -> tuple[str, ...]:
    """Add sites not yet in the catalog; keep earlier entries as they are; return new ids."""
    known = read_discovered_sites(lake_dir)
    new = discovered.join(known.select("site_id"), on="site_id", how="anti")
    if new.height:
        upsert_table(lake_dir, SITES_TABLE, new, schema=DISCOVERED_SCHEMA, key=("site_id",))
    return tuple(new["site_id"].to_list())


def _ingest_counts(read: SessionsRead, *, content_hash: str, ingested_at: datetime) -> pl.DataFrame:
    accepted = read.sessions.group_by("site_id").agg(accepted=pl.len())
    quarantined = (
        read.quarantine.filter(pl.col("site_id").is_not_null())
        .group_by("site_id")
        .agg(quarantined=pl.len())
    )
    counts = accepted.join(quarantined, on="site_id", how="full", coalesce=True)
    return counts.select(
        "site_id",
        content_hash=pl.lit(content_hash),
        file=pl.lit(read.summary.files[0] if read.summary.files else ""),
        accepted=pl.col("accepted").fill_null(0).cast(pl.Int64),
        quarantined=pl.col("quarantined").fill_null(0).cast(pl.Int64),
        ingested_at=pl.lit(ingested_at, dtype=UTC_DATETIME),
    )


def write_sessions_read(
    read: SessionsRead, *, settings: Settings, content_hash: str, ingested_at: datetime
) -> StoredRead:
    """Store one read: upsert sessions, write its quarantine, record discovered sites.

    Idempotent: storing the same read again changes no lake file.
    """
    lake = settings.lake_dir
    result = UpsertResult(0, 0, 0)
    if read.sessions.height:
        result = upsert_table(
            lake, SESSIONS_TABLE, read.sessions, schema=SESSIONS_SCHEMA, key=SESSIONS_KEY
        )
    quarantine_file = None
    if read.quarantine.height:
        quarantine_file = write_quarantine(
            settings.quarantine_dir, read.quarantine, content_hash=content_hash
        )
    counts = _ingest_counts(read, content_hash=content_hash, ingested_at=ingested_at)
    if counts.height:
        upsert_table(
            lake, INGESTS_TABLE, counts, schema=INGESTS_SCHEMA, key=("site_id", "content_hash")
        )
    new_sites = record_discovered_sites(lake, read.discovered_sites)
    return StoredRead(result, quarantine_file, new_sites)


def ingest_session_file(
    path: Path,
    *,
    fmt: str,
    settings: Settings,
    sites: SitesConfig,
    ingested_at: datetime,
    column_map: ColumnMap | Path | None = None,
) -> tuple[SessionsRead, StoredRead]:
    """Read, validate and store one session file against the lake's sessions.

    Raises
    ------
    InputFileError
        When the file as a whole is rejected; nothing of it is stored.
    """
    content_hash = compute_content_hash(read_bytes(path))
    known = read_table(settings.lake_dir, SESSIONS_TABLE, SESSIONS_SCHEMA)
    read = read_sessions(
        path,
        fmt=fmt,
        sites=sites,
        ingested_at=ingested_at,
        column_map=column_map,
        known_sessions=known,
    )
    stored = write_sessions_read(
        read, settings=settings, content_hash=content_hash, ingested_at=ingested_at
    )
    return read, stored


def _discovered_config(row: dict[str, object]) -> SiteConfig:
    return SiteConfig(
        site_id=str(row["site_id"]),
        name=str(row["name"] or row["site_id"]),
        latitude=float(row["latitude"]) if row["latitude"] is not None else 0.0,  # type: ignore[arg-type]
        longitude=float(row["longitude"]) if row["longitude"] is not None else 0.0,  # type: ignore[arg-type]
        timezone=str(row["timezone"] or "UTC"),
    )


def load_site_catalog(settings: Settings) -> list[SiteConfig]:
    """Return configured sites (``sites.toml``) followed by discovered ones, by site id.

    A discovered site has the time zone of its source and no chargers or PV; its coordinates
    are the source's, or 0/0 when the source gives none.
    """
    configured = list(load_sites(settings.sites_file).sites)
    ids = {s.site_id for s in configured}
    discovered = read_discovered_sites(settings.lake_dir).filter(~pl.col("site_id").is_in(ids))
    extra = [_discovered_config(r) for r in discovered.sort("site_id").iter_rows(named=True)]
    return configured + extra


def compute_site_stats(settings: Settings) -> pl.DataFrame:
    """Per catalog site: sessions, first and last plug-in [UTC], share of rows quarantined [-].

    Share quarantined = quarantined / (accepted + quarantined) over all ingested files.
    """
    catalog = pl.DataFrame(
        [
            {"site_id": s.site_id, "name": s.name, "timezone": s.timezone}
            for s in load_site_catalog(settings)
        ],
        schema={"site_id": pl.String, "name": pl.String, "timezone": pl.String},
    )
    sessions = (
        read_table(settings.lake_dir, SESSIONS_TABLE, SESSIONS_SCHEMA)
        .group_by("site_id")
        .agg(
            sessions=pl.len().cast(pl.Int64),
            first_session=pl.col("plug_in_at").min(),
            last_session=pl.col("plug_in_at").max(),
        )
        .collect()
    )
    ingests = (
        read_table(settings.lake_dir, INGESTS_TABLE, INGESTS_SCHEMA)
        .group_by("site_id")
        .agg(pl.col("accepted").sum(), pl.col("quarantined").sum())
        .collect()
    )
    share = pl.col("quarantined") / (pl.col("accepted") + pl.col("quarantined"))
    return (
        catalog.join(sessions, on="site_id", how="left")
        .join(ingests, on="site_id", how="left")
        .select(
            "site_id",
            "name",
            "timezone",
            sessions=pl.col("sessions").fill_null(0),
            first_session="first_session",
            last_session="last_session",
            share_quarantined=share,
        )
    )
