"""Served targets from a run's demand and PV forecasts (pure: frames in, frames out).

Every target is kept as quantiles of energy per interval [kWh]; average power per interval
[kW] is energy divided by the interval length in hours (:func:`add_power`).

Net load (``net = demand - pv``)
    Quantiles combine both forecasts *comonotonically in opposite directions*:
    ``net_p10 = demand_p10 - pv_p90``, ``net_p50 = demand_p50 - pv_p50``,
    ``net_p90 = demand_p90 - pv_p10``. That is exact when high demand always coincides with low
    PV (rank correlation -1) and wider than the truth under independence or positive
    correlation, so the P10-P90 band errs on the wide (conservative) side. It is not a strict
    bound for every dependence structure (quantiles of a sum are not subadditive in general),
    which is why the method is stated in every response (``net_method``).
Headroom
    The charging power the site may allow per interval:
    ``grid_limit_kw - other_load_kw + pv`` at each PV quantile, clipped at zero, so
    ``headroom_p10`` uses PV P10 (exceeded 90 % of the time) and is the safe value a load
    balancer should act on. Demand is not subtracted: headroom is the budget *for* charging.
    Sites without a grid limit (``SiteConfig.grid_limit_kw`` None) have no headroom target.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from forecasting.config import SiteConfig
from forecasting.errors import SchemaError
from forecasting.publication.contract import (
    DEFAULT_VALIDITY,
    QUANTILES,
    ForecastRun,
    ModelIdentity,
    Publication,
    TargetMeta,
    check_run,
    compute_run_id,
)

NET_METHOD: Final = "comonotone-opposite: net_p10=demand_p10-pv_p90, net_p90=demand_p90-pv_p10"
HEADROOM_METHOD: Final = "grid_limit_kw - other_load_kw + pv quantile, clipped at 0"


def add_power(frame: pl.DataFrame, *, resolution_s: int) -> pl.DataFrame:
    """Add ``power_kw_p10``/``_p50``/``_p90`` [kW] from energy quantiles ``p10``.. [kWh]."""
    hours = resolution_s / 3600.0
    return frame.with_columns((pl.col(q) / hours).alias(f"power_kw_{q}") for q in QUANTILES)


def compute_net_load(demand: pl.DataFrame, pv: pl.DataFrame | None) -> pl.DataFrame:
    """Net load quantiles [kWh] per interval from demand and PV quantiles [kWh] (see module).

    Both frames have ``interval_start``, ``p10``, ``p50``, ``p90``; PV must cover every demand
    interval. Without PV, net load is demand.
    """
    if pv is None:
        return demand.select("interval_start", *QUANTILES)
    joined = demand.join(pv, on="interval_start", how="left", suffix="_pv")
    uncovered = joined.filter(pl.col("p50_pv").is_null())
    if uncovered.height:
        msg = (
            f"pv forecast does not cover demand interval {uncovered['interval_start'][0]!r}; "
            "forecast PV on the same interval grid as demand"
        )
        raise SchemaError(msg)
    return joined.select(
        "interval_start",
        (pl.col("p10") - pl.col("p90_pv")).alias("p10"),
        (pl.col("p50") - pl.col("p50_pv")).alias("p50"),
        (pl.col("p90") - pl.col("p10_pv")).alias("p90"),
    )


def compute_headroom(
    intervals: pl.DataFrame,
    pv: pl.DataFrame | None,
    *,
    grid_limit_kw: float,
    other_load_kw: float,
    resolution_s: int,
) -> pl.DataFrame:
    """Headroom quantiles as energy per interval [kWh] (see module docstring).

    ``intervals`` supplies the grid (``interval_start``); ``pv`` has PV energy quantiles [kWh]
    per interval, or is None (no PV: every quantile is ``grid_limit_kw - other_load_kw``).
    """
    hours = resolution_s / 3600.0
    base_kwh = (grid_limit_kw - other_load_kw) * hours
    grid = intervals.select("interval_start")
    if pv is not None:
        grid = grid.join(pv.select("interval_start", *QUANTILES), on="interval_start", how="left")
    else:
        grid = grid.with_columns(pl.lit(0.0).alias(q) for q in QUANTILES)
    return grid.select(
        "interval_start",
        *((pl.lit(base_kwh) + pl.col(q)).clip(lower_bound=0.0).alias(q) for q in QUANTILES),
    )


def _target_meta(run: ForecastRun) -> dict[str, TargetMeta]:
    demand = run.targets["demand"]
    pv = run.targets.get("pv")
    meta = {"demand": TargetMeta({"demand": demand.model}, demand.fallback_reason)}
    combined: dict[str, ModelIdentity] = {"demand": demand.model}
    reasons = [r for r in (demand.fallback_reason, pv.fallback_reason if pv else None) if r]
    if pv is not None:
        meta["pv"] = TargetMeta({"pv": pv.model}, pv.fallback_reason)
        combined["pv"] = pv.model
    meta["net"] = TargetMeta(combined, "; ".join(reasons) or None)
    pv_meta = {"pv": pv.model} if pv else {}
    meta["headroom"] = TargetMeta(pv_meta, pv.fallback_reason if pv else None)
    return meta


def build_publication(run: ForecastRun, *, site: SiteConfig) -> Publication:
    """Validate a run and derive every served target, ready for the forecast store.

    Parameters
    ----------
    run
        The run to publish (see :mod:`forecasting.publication.contract` for the contract).
    site
        The site's configuration: ``grid_limit_kw`` [kW] and ``other_load_kw`` [kW] feed the
        headroom; a site without a grid limit is published without a headroom target.
    """
    check_run(run)
    if run.site_id != site.site_id:
        msg = f"run is for site {run.site_id!r} but the config is for {site.site_id!r}"
        raise SchemaError(msg)
    resolution_s = int(run.resolution.total_seconds())
    demand = run.targets["demand"].frame.sort("interval_start")
    pv = run.targets["pv"].frame.sort("interval_start") if "pv" in run.targets else None
    parts = {"demand": demand, "net": compute_net_load(demand, pv)}
    if pv is not None:
        parts["pv"] = pv
    meta = _target_meta(run)
    if site.grid_limit_kw is not None:
        parts["headroom"] = compute_headroom(
            demand,
            pv,
            grid_limit_kw=site.grid_limit_kw,
            other_load_kw=site.other_load_kw,
            resolution_s=resolution_s,
        )
    else:
        del meta["headroom"]
    intervals = pl.concat(
        [
            frame.select(
                pl.lit(name).alias("target"),
                "interval_start",
                *(pl.col(q).cast(pl.Float64) for q in QUANTILES),
            )
            for name, frame in sorted(parts.items())
        ]
    )
    return Publication(
        run_id=compute_run_id(
            run, grid_limit_kw=site.grid_limit_kw, other_load_kw=site.other_load_kw
        ),
        site_id=run.site_id,
        issued_at=run.issued_at,
        data_cutoff=run.data_cutoff,
        expires_at=run.expires_at or run.issued_at + DEFAULT_VALIDITY,
        resolution_s=resolution_s,
        grid_limit_kw=site.grid_limit_kw,
        other_load_kw=site.other_load_kw,
        targets=meta,
        intervals=intervals,
    )
