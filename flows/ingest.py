"""The ingest step of the flows: every configured source into the lake, the rest to quarantine.

Files are ingested one after the other: the lake has one writer at a time, and a file's overlap
check must see the sessions of the files before it. Re-ingesting an unchanged file changes
nothing (the lake upserts by key and keeps snapshots whose rows did not change), so "ingest
what is new" needs no bookkeeping of its own.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flows import tasks
from forecasting.config import SitesConfig
from forecasting.errors import UnknownSiteError
from forecasting.ingest.summary import IngestSummary
from forecasting.pipeline_config import PipelineConfig, Source
from forecasting.settings import REPO_ROOT, Settings


def ingest_sources(
    config: PipelineConfig, *, sites: SitesConfig, ingested_at: datetime
) -> IngestSummary:
    """Ingest every source of ``config`` into the lake of the current settings, as tasks.

    Called from inside a flow (not a flow itself: a subflow run would cost API round trips for
    nothing).

    Returns the combined balance (``accepted + quarantined + duplicates == rows_read``).
    """
    settings = Settings()
    ingest = tasks.with_io_retries(tasks.ingest_sessions, config.retries)
    total = IngestSummary()
    for source in config.sources:
        column_map = REPO_ROOT / source.column_map if source.column_map else None
        for path in source.files():
            if source.kind == "sessions":
                summary = ingest(
                    path,
                    fmt=source.format,
                    settings=settings,
                    sites=sites,
                    ingested_at=ingested_at,
                    column_map=column_map,
                )
            else:
                summary = _ingest_solar(
                    path,
                    source=source,
                    sites=sites,
                    settings=settings,
                    config=config,
                    ingested_at=ingested_at,
                    column_map=column_map,
                )
            total.add(summary)
    total.check_balance()
    return total


def _ingest_solar(
    path: Path,
    *,
    source: Source,
    sites: SitesConfig,
    settings: Settings,
    config: PipelineConfig,
    ingested_at: datetime,
    column_map: Path | None,
) -> IngestSummary:
    """Read one weather or PV file, upsert its accepted rows, keep its rejected ones."""
    site = sites.get(source.site or "")
    if site is None:
        msg = (
            f"source {str(source.path)!r} names site {source.site!r}, which is not in sites.toml; "
            "add the site (with its location) before ingesting its weather or PV"
        )
        raise UnknownSiteError(msg)
    retry = config.retries
    read = tasks.with_io_retries(tasks.read_solar_file, retry)(
        path, source=source, site=site, ingested_at=ingested_at, column_map=column_map
    )
    if read.accepted.height:
        tasks.with_io_retries(tasks.upsert_rows, retry)(
            settings.lake_dir, read.accepted, table=source.kind
        )
    if read.quarantined.height:
        tasks.with_io_retries(tasks.store_quarantine, retry)(
            settings.quarantine_dir, read.quarantined, content_hash=read.content_hash
        )
    return read.summary
