"""The Perth & Kinross sessions the benchmarks share, read with the project's own reader."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from forecasting.config import load_sites
from forecasting.ingest.sessions import read_sessions

REPO = Path(__file__).resolve().parent.parent
PERTH = REPO.parent / "shared" / "data" / "sessions" / "perth-kinross"


def read_perth_sessions() -> pl.DataFrame:
    """Accepted sessions of the three Perth & Kinross files (``SESSIONS_SCHEMA``), in file order.

    Each file is checked for overlaps against the sessions of the files read before it, as an
    ingest into one lake would.
    """
    sites = load_sites(REPO / "configs" / "sites.toml")
    frames: list[pl.DataFrame] = []
    for path in sorted(PERTH.glob("*corrected.csv")):
        read = read_sessions(
            path,
            fmt="chargeplace",
            sites=sites,
            ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
            known_sessions=pl.concat(frames) if frames else None,
        )
        frames.append(read.sessions)
    return pl.concat(frames)
