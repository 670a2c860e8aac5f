"""When a backtest forecasts: issue times, the interval grid each issue covers, refit blocks.

Issue times are daily at a site-local wall-clock time; the horizon is added on the site's wall
clock, so a 24 h horizon from 00:00 covers the local day (23 or 25 hours on DST days).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from forecasting.backtest.contract import GRID_SCHEMA
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError


@dataclass(frozen=True)
class BacktestSpec:
    """When and how often to forecast.

    Attributes
    ----------
    start, end
        First and last issue day (site-local calendar days, both included).
    issue_time
        Site-local wall-clock time of each daily issue.
    horizon
        Length of each forecast, added to the local issue time on the wall clock, so 24 h from
        00:00 covers the site-local day (23 or 25 hours on DST days).
    resolution
        Interval length; must divide a day.
    refit_every
        Models are refit at the first issue time of each block of this length.
    """

    start: date
    end: date
    issue_time: time = time(0)
    horizon: timedelta = timedelta(hours=24)
    resolution: timedelta = timedelta(hours=1)
    refit_every: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        """Check the spec is usable."""
        day = timedelta(days=1)
        problems = {
            "end is before start": self.end < self.start,
            "resolution must be positive and divide a day": self.resolution <= timedelta(0)
            or day % self.resolution != timedelta(0),
            "horizon must be at least one resolution": self.horizon < self.resolution,
            "refit_every must be positive": self.refit_every <= timedelta(0),
        }
        for problem, bad in problems.items():
            if bad:
                msg = f"invalid backtest spec {self!r}: {problem}; fix the command-line options"
                raise ConfigError(msg)


def build_issue_times(*, site: SiteConfig, spec: BacktestSpec) -> list[datetime]:
    """Return the UTC issue times of ``site``: one per local day at ``spec.issue_time``.

    A nonexistent local time (spring forward) maps to the instant after the gap, an ambiguous
    one (fall back) to its first occurrence, as Python's ``zoneinfo`` does with ``fold=0``.
    """
    zone = ZoneInfo(site.timezone)
    days = (spec.end - spec.start).days + 1
    return [
        datetime.combine(spec.start + timedelta(days=d), spec.issue_time, tzinfo=zone).astimezone(
            UTC
        )
        for d in range(days)
    ]


def build_grid(*, site: SiteConfig, spec: BacktestSpec) -> pl.DataFrame:
    """Return the intervals to forecast for ``site`` (``GRID_SCHEMA``), sorted.

    Each issue covers the intervals starting in ``[ceil(issued_at), end)``, where ``end`` is
    the local issue time plus ``spec.horizon`` on the site's wall clock.
    """
    zone = ZoneInfo(site.timezone)
    issues = build_issue_times(site=site, spec=spec)
    ends = [(t.astimezone(zone) + spec.horizon).astimezone(UTC) for t in issues]
    step_us = spec.resolution // timedelta(microseconds=1)
    return (
        pl.DataFrame(
            {"issued_at": issues, "end": ends},
            schema={"issued_at": GRID_SCHEMA["issued_at"], "end": GRID_SCHEMA["issued_at"]},
        )
        .with_columns(
            first=pl.from_epoch(
                (pl.col("issued_at").dt.epoch("us") + step_us - 1) // step_us * step_us,
                time_unit="us",
            ).dt.replace_time_zone("UTC")
        )
        .select(
            pl.lit(site.site_id).alias("site_id"),
            "issued_at",
            pl.datetime_ranges("first", "end", interval=spec.resolution, closed="left").alias(
                "interval_start"
            ),
        )
        .explode("interval_start")
        .drop_nulls("interval_start")
        .cast(pl.Schema(GRID_SCHEMA))
        .sort("issued_at", "interval_start")
    )


def assign_refit_blocks(issue_times: Sequence[datetime], *, refit_every: timedelta) -> list[int]:
    """Return the refit block of each issue time (0, 0, ..., 1, ...).

    A block starts at an issue time and holds every later issue time less than
    ``refit_every`` after it; the next issue time starts a new block.
    """
    blocks: list[int] = []
    block, block_start = -1, None
    for issued_at in issue_times:
        if block_start is None or issued_at - block_start >= refit_every:
            block, block_start = block + 1, issued_at
        blocks.append(block)
    return blocks
