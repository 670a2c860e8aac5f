"""The lake: validated tables (sessions, weather, PV) as Parquet, one file per site.

Layout::

    <lake_dir>/<table>/CURRENT                         name of the snapshot in force
    <lake_dir>/<table>/<snapshot>/<site_id>.parquet    one file per site

Why Parquet per site rather than an embedded database: the tables are append-mostly and read
whole per site by polars (lazy scans with predicate push-down), any tool can read them, and a
snapshot folder plus an atomically replaced ``CURRENT`` pointer gives all-or-nothing writes
without a server. A writer builds a complete new snapshot beside the old one and only then
swaps the pointer (``os.replace`` is atomic on POSIX), so a crash mid-write leaves the lake as it
was. Unchanged site files are hard-linked into the new snapshot, so an upsert costs the sites
it touches. One writer at a time is enforced with an exclusive lock file.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from forecasting.errors import StoreError
from forecasting.schemas import empty_frame

_POINTER = "CURRENT"


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did, in rows."""

    inserted: int
    updated: int
    unchanged: int


def _snapshot_dir(table_dir: Path) -> Path | None:
    pointer = table_dir / _POINTER
    if not pointer.exists():
        return None
    return table_dir / pointer.read_text().strip()


def read_table(
    lake_dir: Path,
    table: str,
    schema: Mapping[str, pl.DataType],
    *,
    sites: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Scan a lake table, optionally only some sites; an absent table scans as empty."""
    snapshot = _snapshot_dir(lake_dir / table)
    if snapshot is None:
        return empty_frame(schema).lazy()
    files = sorted(snapshot.glob("*.parquet"))
    if sites is not None:
        wanted = set(sites)
        files = [f for f in files if f.stem in wanted]
    if not files:
        return empty_frame(schema).lazy()
    return pl.scan_parquet(files).select(list(schema))


def list_sites(lake_dir: Path, table: str) -> list[str]:
    """Site ids that have a file in the current snapshot of ``table``."""
    snapshot = _snapshot_dir(lake_dir / table)
    if snapshot is None:
        return []
    return sorted(f.stem for f in snapshot.glob("*.parquet"))


@contextmanager
def _writer_lock(table_dir: Path) -> Iterator[None]:
    table_dir.mkdir(parents=True, exist_ok=True)
    with (table_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            msg = f"lake table {str(table_dir)!r} is being written by another process; retry later"
            raise StoreError(msg) from exc
        yield


def _merge_site(
    old: pl.DataFrame, new: pl.DataFrame, key: Sequence[str]
) -> tuple[pl.DataFrame, UpsertResult]:
    """Replace rows of ``old`` whose key is in ``new``, append the rest; sorted by key."""
    value_columns = [c for c in new.columns if c not in key and c != "ingested_at"]
    existing = new.join(old.select(key), on=list(key), how="semi", nulls_equal=True)
    fresh = new.join(old.select(key), on=list(key), how="anti", nulls_equal=True)
    same = existing.join(
        old.select([*key, *value_columns]),
        on=[*key, *value_columns],
        how="semi",
        nulls_equal=True,
    )
    changed = existing.join(same.select(key), on=list(key), how="anti", nulls_equal=True)
    kept = old.join(changed.select(key), on=list(key), how="anti", nulls_equal=True)
    merged = pl.concat([kept, changed, fresh], how="vertical").sort(list(key), nulls_last=True)
    return merged, UpsertResult(
        inserted=fresh.height, updated=changed.height, unchanged=same.height
    )


def upsert_table(
    lake_dir: Path,
    table: str,
    frame: pl.DataFrame,
    *,
    schema: Mapping[str, pl.DataType],
    key: Sequence[str],
) -> UpsertResult:
    """Insert or replace rows of ``frame`` in ``table``, keyed on ``key``, atomically.

    ``frame`` must have exactly the columns of ``schema`` and a ``site_id`` column; rows whose
    key already exists are replaced only when a value other than ``ingested_at`` differs, so
    re-ingesting the same file changes nothing (not even the file timestamps of the snapshot).
    """
    table_dir = lake_dir / table
    with _writer_lock(table_dir):
        old_snapshot = _snapshot_dir(table_dir)
        new_name = f"snap-{uuid.uuid4().hex[:12]}"
        staging = table_dir / f".tmp-{new_name}"
        staging.mkdir(parents=True)
        totals = [0, 0, 0]
        try:
            touched = set(frame["site_id"].unique().to_list())
            if old_snapshot is not None:
                for existing in old_snapshot.glob("*.parquet"):
                    if existing.stem not in touched:
                        os.link(existing, staging / existing.name)
            for site_id, part in frame.partition_by("site_id", as_dict=True).items():
                site = str(site_id[0])
                old_file = old_snapshot / f"{site}.parquet" if old_snapshot else None
                old = (
                    pl.read_parquet(old_file)
                    if old_file is not None and old_file.exists()
                    else empty_frame(schema)
                )
                merged, result = _merge_site(old, part.select(list(schema)), key)
                totals = [
                    totals[0] + result.inserted,
                    totals[1] + result.updated,
                    totals[2] + result.unchanged,
                ]
                if result.inserted == 0 and result.updated == 0 and old_file is not None:
                    os.link(old_file, staging / f"{site}.parquet")
                else:
                    merged.write_parquet(staging / f"{site}.parquet")
            if totals[0] == 0 and totals[1] == 0 and old_snapshot is not None:
                shutil.rmtree(staging)
                return UpsertResult(*totals)
            final = table_dir / new_name
            staging.rename(final)
            pointer_tmp = table_dir / f".{_POINTER}.{new_name}"
            pointer_tmp.write_text(new_name)
            pointer_tmp.replace(table_dir / _POINTER)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _remove_old_snapshots(table_dir, keep={new_name, old_snapshot.name if old_snapshot else ""})
        return UpsertResult(*totals)


def _remove_old_snapshots(table_dir: Path, *, keep: set[str]) -> None:
    """Delete snapshots older than the previous one (a reader may still be scanning that)."""
    for snapshot in table_dir.glob("snap-*"):
        if snapshot.name not in keep:
            shutil.rmtree(snapshot, ignore_errors=True)
