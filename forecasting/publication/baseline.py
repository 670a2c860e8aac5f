"""A marked baseline that stands in for a stale run (pure).

When a site's latest run is past its ``expires_at`` and the API is configured to replace stale
runs (``stale_policy = "baseline"``), it serves this instead, marked as a fallback:

* demand: the stale run's *daily profile* (mean of each quantile per UTC time of day) laid on a
  fresh grid starting at the interval that contains ``now``, as long as the stale run's horizon;
* pv: zero (no PV is assumed: the safe side for both net load and headroom);
* net: equal to the demand profile (PV is zero);
* headroom: ``grid_limit_kw - other_load_kw`` without PV, when the run had a grid limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

from forecasting.publication.contract import QUANTILES, ModelIdentity, Publication, TargetMeta
from forecasting.publication.targets import compute_headroom
from forecasting.schemas import UTC_DATETIME

BASELINE_MODEL: Final = ModelIdentity(name="daily-profile-baseline", version="1", alias=None)
NO_PV_MODEL: Final = ModelIdentity(name="no-pv-baseline", version="1", alias=None)


def _grid(now: datetime, *, resolution_s: int, count: int) -> pl.DataFrame:
    step = timedelta(seconds=resolution_s)
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    first = epoch + ((now - epoch) // step) * step
    return pl.DataFrame(
        {"interval_start": [first + i * step for i in range(count)]},
        schema={"interval_start": UTC_DATETIME},
    )


def _daily_profile(demand: pl.DataFrame, grid: pl.DataFrame) -> pl.DataFrame:
    slot = pl.col("interval_start").dt.time().alias("slot")
    profile = demand.group_by(slot).agg(pl.col(q).mean() for q in QUANTILES)
    overall = demand.select(pl.col(q).mean() for q in QUANTILES).row(0)
    return (
        grid.with_columns(slot)
        .join(profile, on="slot", how="left")
        .select(
            "interval_start",
            *(pl.col(q).fill_null(v) for q, v in zip(QUANTILES, overall, strict=True)),
        )
    )


def build_baseline(stale: Publication, *, now: datetime) -> Publication:
    """Build the baseline publication that replaces ``stale`` at ``now`` [UTC]."""
    demand_rows = stale.intervals.filter(pl.col("target") == "demand")
    grid = _grid(now, resolution_s=stale.resolution_s, count=max(demand_rows.height, 1))
    demand = _daily_profile(demand_rows, grid)
    zero_pv = grid.with_columns(pl.lit(0.0).alias(q) for q in QUANTILES)
    parts = {"demand": demand, "pv": zero_pv, "net": demand}
    targets = {
        "demand": TargetMeta({"demand": BASELINE_MODEL}),
        "pv": TargetMeta({"pv": NO_PV_MODEL}),
        "net": TargetMeta({"demand": BASELINE_MODEL, "pv": NO_PV_MODEL}),
    }
    if stale.grid_limit_kw is not None:
        parts["headroom"] = compute_headroom(
            grid,
            None,
            grid_limit_kw=stale.grid_limit_kw,
            other_load_kw=stale.other_load_kw,
            resolution_s=stale.resolution_s,
        )
        targets["headroom"] = TargetMeta({"pv": NO_PV_MODEL})
    intervals = pl.concat(
        [
            f.select(pl.lit(n).alias("target"), "interval_start", *QUANTILES)
            for n, f in parts.items()
        ]
    )
    return Publication(
        run_id=stale.run_id,
        site_id=stale.site_id,
        issued_at=stale.issued_at,
        data_cutoff=stale.data_cutoff,
        expires_at=stale.expires_at,
        resolution_s=stale.resolution_s,
        grid_limit_kw=stale.grid_limit_kw,
        other_load_kw=stale.other_load_kw,
        targets=targets,
        intervals=intervals,
        created_at=stale.created_at,
    )


def resolve_served(
    publication: Publication, *, now: datetime, stale_policy: str
) -> tuple[Publication, bool, str | None]:
    """Decide what to serve at ``now`` [UTC]: the run, the run marked stale, or a baseline.

    Returns the publication to serve, whether it is stale, and a fallback reason that
    overrides the run's own (None when the run is served as is).
    """
    if now < publication.expires_at:
        return publication, False, None
    expired = publication.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if stale_policy == "baseline":
        reason = (
            f"run {publication.run_id} expired at {expired}; serving a daily-profile baseline "
            "of it without PV"
        )
        return build_baseline(publication, now=now), True, reason
    return publication, True, None
