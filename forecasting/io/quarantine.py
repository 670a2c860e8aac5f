"""The quarantine: rows that were read but not accepted, kept with their reason, never lost.

One Parquet file per ingested input, named by the input's content hash, so re-ingesting the
same file rewrites the same quarantine file instead of adding a copy.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from forecasting.schemas import QUARANTINE_SCHEMA, empty_frame, validate_frame


def write_quarantine(quarantine_dir: Path, frame: pl.DataFrame, *, content_hash: str) -> Path:
    """Write the quarantined rows of one input file atomically; return the file written."""
    validate_frame(frame, QUARANTINE_SCHEMA, name="quarantine")
    table = str(frame["table"][0]) if frame.height else "empty"
    target = quarantine_dir / table / f"{content_hash}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".parquet.tmp")
    frame.select(list(QUARANTINE_SCHEMA)).write_parquet(staging)
    staging.replace(target)
    return target


def read_quarantine(quarantine_dir: Path, *, table: str | None = None) -> pl.LazyFrame:
    """Scan every quarantined row (optionally of one table)."""
    pattern = f"{table}/*.parquet" if table else "*/*.parquet"
    files = sorted(quarantine_dir.glob(pattern))
    if not files:
        return empty_frame(QUARANTINE_SCHEMA).lazy()
    return pl.scan_parquet(files)
