"""Storing session reads, the discovered-sites table and the site catalog, on a real lake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from forecasting.config import load_sites
from forecasting.io.catalog import (
    compute_site_stats,
    ingest_session_file,
    load_site_catalog,
    read_discovered_sites,
)
from forecasting.io.lake import read_table
from forecasting.io.quarantine import read_quarantine
from forecasting.schemas import SESSIONS_SCHEMA
from forecasting.settings import REPO_ROOT, Settings

HEADER = "CP ID,Connector,Start Date,Start Time,End Date,End Time,Total kWh,Site,Model"
FIRST = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 2, tzinfo=UTC)


def _export(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _row(day: int, site: str = '"Broxden Park & Ride, Perth"', kwh: str = "12.5") -> str:
    return (
        f"50245,1,{day:02d}/07/2018,10:00,{day:02d}/07/2018,11:00,{kwh},{site},APT 22kW Dual Outlet"
    )


@pytest.fixture
def settings(evcast_home: Path) -> Settings:
    return Settings()


def _ingest(path: Path, settings: Settings, at: datetime = FIRST) -> object:
    sites = load_sites(settings.sites_file)
    return ingest_session_file(
        path, fmt="chargeplace", settings=settings, sites=sites, ingested_at=at
    )


def _lake_files(lake: Path) -> dict[str, float]:
    """Every lake file with its modification time; the writer's lock files aside."""
    files = (p for p in lake.rglob("*") if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(lake)): p.stat().st_mtime for p in files}


def test_reingest_changes_nothing(tmp_path: Path, settings: Settings) -> None:
    path = _export(tmp_path / "a.csv", _row(1), _row(2), _row(3, kwh="-4"))
    read, stored = _ingest(path, settings)
    assert (stored.sessions.inserted, read.summary.quarantined) == (2, 1)
    before = _lake_files(settings.lake_dir)
    quarantine_files = sorted(settings.quarantine_dir.rglob("*.parquet"))
    read_again, stored_again = _ingest(path, settings, at=LATER)
    assert read_again.summary.accepted == 2  # not quarantined as overlapping with themselves
    assert (stored_again.sessions.inserted, stored_again.sessions.updated) == (0, 0)
    assert _lake_files(settings.lake_dir) == before
    # the quarantine file of the same content is rewritten in place, not copied
    assert sorted(settings.quarantine_dir.rglob("*.parquet")) == quarantine_files
    assert read_quarantine(settings.quarantine_dir, table="sessions").collect().height == 1


def test_later_file_with_overlapping_rows_upserts(tmp_path: Path, settings: Settings) -> None:
    _ingest(_export(tmp_path / "a.csv", _row(1), _row(2)), settings)
    read, stored = _ingest(_export(tmp_path / "b.csv", _row(2), _row(3)), settings, at=LATER)
    assert read.summary.quarantined == 0
    # day 2 is the same session read from another file: its source changes, nothing doubles
    assert (stored.sessions.inserted, stored.sessions.updated) == (1, 1)
    lake = read_table(settings.lake_dir, "sessions", SESSIONS_SCHEMA).collect()
    assert sorted(lake["source"].to_list()) == ["a.csv:1", "b.csv:1", "b.csv:2"]


def test_discovered_sites_are_recorded_once(tmp_path: Path, settings: Settings) -> None:
    new_site = '"Harbour Road, Perth"'
    _, stored = _ingest(_export(tmp_path / "a.csv", _row(1, site=new_site)), settings)
    assert stored.new_sites == ("harbour-road-perth",)
    _, again = _ingest(_export(tmp_path / "b.csv", _row(2, site=new_site)), settings, at=LATER)
    assert again.new_sites == ()
    table = read_discovered_sites(settings.lake_dir)
    assert table.select("site_id", "name", "timezone", "source", "first_seen_at").rows() == [
        ("harbour-road-perth", "Harbour Road, Perth", "Europe/London", "a.csv", FIRST)
    ]
    catalog = {s.site_id: s for s in load_site_catalog(settings)}
    configured = load_sites(REPO_ROOT / "configs" / "sites.toml").sites
    assert set(catalog) == {s.site_id for s in configured} | {"harbour-road-perth"}
    found = catalog["harbour-road-perth"]
    assert (found.timezone, found.latitude, found.longitude) == ("Europe/London", 0.0, 0.0)


def test_site_stats(tmp_path: Path, settings: Settings) -> None:
    path = _export(tmp_path / "a.csv", _row(1), _row(2), _row(3), _row(4, kwh="0"))
    _ingest(path, settings)
    _ingest(path, settings, at=LATER)  # counted once
    stats = compute_site_stats(settings).filter(pl.col("site_id") == "broxden-park-ride-perth")
    row = stats.row(0, named=True)
    assert row["sessions"] == 3
    assert row["first_session"] == datetime(2018, 7, 1, 9, tzinfo=UTC)
    assert row["last_session"] == datetime(2018, 7, 3, 9, tzinfo=UTC)
    assert row["share_quarantined"] == pytest.approx(0.25, abs=1e-12)  # 1 of 4 rows
