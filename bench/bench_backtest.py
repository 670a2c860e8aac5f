"""Wall time of a rolling-origin backtest (forecasting.backtest.engine) on Perth & Kinross data.

Every model runs alone through ``run_backtest`` on the same sites and issue days (daily 00:00
Europe/London issues, horizon = the local day, refit every --refit-days), so each time is that
model's whole backtest: fits, feature matrices, predictions, checks and actuals. The peer is the
demand model asked issue by issue (``predict`` once per issue time, the matrix rebuilt every
time) instead of once per refit block (``predict_issues``: one matrix per block); both fit on
the same cadence, so the ratio isolates the reuse of feature matrices. Times are extrapolated
linearly to a season (92 daily issues) for 30 sites. Scores (MAE, mean pinball, 80% coverage)
are on the intervals every model forecast.

Run: ``.venv/bin/python bench/bench_backtest.py [--sites 4] [--days 14]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from forecasting.backtest.engine import ForecasterFactory, run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.metrics import compute_backtest_metrics
from forecasting.backtest.models import build_factories
from forecasting.config import SiteConfig, load_sites
from forecasting.ingest.sessions import read_sessions
from forecasting.settings import REPO_ROOT
from models.base import Forecaster
from models.demand_config import load_demand_config

FILES = (
    REPO_ROOT.parent / "shared" / "data" / "sessions" / "perth-kinross",
    REPO_ROOT / "data" / "sample" / "sessions" / "perth-kinross",
)
NAME = "sept18toaug19standardisedcorrected.csv"


class IssueByIssue:
    """The demand model without its batch method, so the engine asks it once per issue."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner = inner
        self.name = inner.name

    def fit(self, sessions: pl.DataFrame, **kwargs: object) -> IssueByIssue:
        self.inner.fit(sessions, **kwargs)  # type: ignore[arg-type]
        return self

    def predict(self, sessions: pl.DataFrame, **kwargs: object) -> pl.DataFrame:
        return self.inner.predict(sessions, **kwargs)  # type: ignore[arg-type]


def _read(sites_config: Path) -> tuple[pl.DataFrame, list[SiteConfig]]:
    path = next(folder / NAME for folder in FILES if (folder / NAME).exists())
    config = load_sites(sites_config)
    read = read_sessions(path, fmt="chargeplace", sites=config, ingested_at=datetime.now(UTC))
    return read.sessions, list(config.sites)


def _busiest(sessions: pl.DataFrame, sites: list[SiteConfig], count: int) -> list[SiteConfig]:
    ranked = sessions.group_by("site_id").len().sort("len", descending=True)["site_id"]
    by_id = {s.site_id: s for s in sites}
    return [by_id[s] for s in ranked.to_list() if s in by_id][:count]


def _timed(
    sessions: pl.DataFrame, sites: list[SiteConfig], factory: ForecasterFactory, spec: BacktestSpec
) -> tuple[float, pl.DataFrame, pl.DataFrame]:
    start = time.perf_counter()
    result = run_backtest(sessions, sites=sites, factories={"m": factory}, spec=spec)
    return time.perf_counter() - start, result.forecasts, result.actuals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4, help="busiest sites to backtest")
    parser.add_argument("--days", type=int, default=14, help="daily issues from --start")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2019, 6, 1))
    parser.add_argument("--refit-days", type=int, default=7)
    args = parser.parse_args()
    sessions, configured = _read(REPO_ROOT / "configs" / "sites.toml")
    sites = _busiest(sessions, configured, args.sites)
    spec = BacktestSpec(
        start=args.start,
        end=args.start + timedelta(days=args.days - 1),
        refit_every=timedelta(days=args.refit_days),
    )
    demand_config = load_demand_config(REPO_ROOT / "configs" / "demand.toml")
    factories = build_factories(
        ["seasonal_naive", "persistence", "demand"],
        sites=sites,
        resolution=spec.resolution,
        demand_config=demand_config,
    )
    demand: Callable[[SiteConfig], Forecaster] = factories["demand"]
    runs = {**factories, "demand (issue by issue, peer)": lambda s: IssueByIssue(demand(s))}
    print(f"{len(sites)} sites x {args.days} daily issues, refit every {args.refit_days} d")
    rows, frames, actuals = [], [], None
    for name, factory in runs.items():
        seconds, forecasts, actuals = _timed(sessions, sites, factory, spec)
        frames.append(forecasts.with_columns(model=pl.lit(name)))
        season = seconds * (30 / len(sites)) * (92 / args.days)
        rows.append({"model": name, "seconds": seconds, "season_30_sites_min": season / 60})
        print(f"{name:32} {seconds:8.1f} s  (season, 30 sites: ~{season / 60:.1f} min)")
    times = {r["model"]: r["seconds"] for r in rows}
    ratio = times["demand (issue by issue, peer)"] / times["demand"]
    print(f"demand: issue-by-issue / per-block matrices = {ratio:.2f}x the time")
    metrics = compute_backtest_metrics(
        pl.concat(frames),
        actuals,  # type: ignore[arg-type]
        resolution=spec.resolution,
        timezones={s.site_id: s.timezone for s in sites},
    )
    print(metrics.overall.select("model", "n", "mae", "pinball", "coverage_80"))


if __name__ == "__main__":
    main()
