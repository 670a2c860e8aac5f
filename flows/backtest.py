"""The ``backtest`` flow: the CLI's rolling-origin backtest core, per site as mapped tasks.

Same code path as ``evcast backtest``: :func:`forecasting.backtest.engine.run_backtest` per
site, :func:`forecasting.backtest.metrics.compute_backtest_metrics` on all of them, the HTML
report and the output files of :mod:`forecasting.backtest.contract`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows import steps, tasks
from flows.runtime import default_task_runner
from forecasting.backtest.engine import BacktestResult, run_backtest
from forecasting.backtest.grid import BacktestSpec
from forecasting.backtest.metrics import BacktestMetrics, compute_backtest_metrics
from forecasting.backtest.models import build_factories
from forecasting.backtest.outputs import write_backtest_outputs
from forecasting.backtest.report import build_report_html
from forecasting.config import SiteConfig
from forecasting.io.lake import read_table
from forecasting.pipeline_config import load_pipeline_config
from forecasting.schemas import SESSIONS_SCHEMA
from forecasting.settings import Settings
from models.demand_config import load_demand_config


@task(name="read-lake-sessions", cache_policy=NO_CACHE)
def read_lake_sessions(lake_dir: Path) -> pl.DataFrame:
    """Read every session of the lake (the engine hides the future from each issue time)."""
    return read_table(lake_dir, "sessions", SESSIONS_SCHEMA).collect()


@task(name="backtest-site", cache_policy=NO_CACHE)
def backtest_site(
    site: SiteConfig,
    *,
    sessions: pl.DataFrame,
    pool: list[SiteConfig],
    models: list[str],
    spec: BacktestSpec,
    demand_config: Path,
) -> BacktestResult:
    """Backtest every model on one site."""
    factories = build_factories(
        models,
        sites=pool,
        resolution=spec.resolution,
        demand_config=load_demand_config(demand_config),
    )
    return run_backtest(sessions, sites=[site], factories=factories, spec=spec)


@task(name="score-backtest", cache_policy=NO_CACHE)
def score_backtest(
    result: BacktestResult, *, spec: BacktestSpec, sites: list[SiteConfig]
) -> BacktestMetrics:
    """Score every model on the intervals all of them forecast."""
    return compute_backtest_metrics(
        result.forecasts,
        result.actuals,
        resolution=spec.resolution,
        timezones={s.site_id: s.timezone for s in sites},
    )


@task(name="write-backtest", cache_policy=NO_CACHE)
def write_outputs(
    out_dir: Path, result: BacktestResult, metrics: BacktestMetrics, *, facts: dict[str, object]
) -> list[Path]:
    """Write forecasts, actuals, metrics and the HTML report into ``out_dir``."""
    html = build_report_html(
        result.forecasts, result.actuals, metrics, title="evcast backtest (flow)", facts=facts
    )
    return write_backtest_outputs(out_dir, result, metrics, report_html=html, facts=facts)


@flow(name="backtest", validate_parameters=True, task_runner=default_task_runner())
def backtest(
    start: date,
    end: date,
    out_dir: Path,
    *,
    sites: list[str] | None = None,
    models: list[str] | None = None,
    config_file: Path | None = None,
    refit_every_days: int = 7,
) -> list[Path]:
    """Backtest models rolling-origin over ``start..end`` and write the output folder."""
    settings = Settings()
    config = load_pipeline_config(config_file or settings.config_dir / "pipeline.toml")
    spec = BacktestSpec(
        start=start,
        end=end,
        resolution=config.forecast.resolution,
        refit_every=timedelta(days=refit_every_days),
    )
    names = models or ["demand", "seasonal_naive", "persistence"]
    catalog = tasks.with_io_retries(tasks.read_site_catalog, config.retries)(settings)
    sessions = tasks.with_io_retries(read_lake_sessions, config.retries)(settings.lake_dir)
    chosen = steps.select_sites(catalog, sessions, wanted=tuple(sites or ()))
    per_site = backtest_site.map(
        chosen,
        sessions=unmapped(sessions),
        pool=unmapped(chosen),
        models=unmapped(names),
        spec=unmapped(spec),
        demand_config=unmapped(steps.repo_path(config.training.demand_config)),
    ).result()
    result = BacktestResult(
        forecasts=pl.concat([r.forecasts for r in per_site]),
        actuals=pl.concat([r.actuals for r in per_site]),
        grid=pl.concat([r.grid for r in per_site]),
    )
    metrics = score_backtest(result, spec=spec, sites=chosen)
    facts: dict[str, object] = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "models": ",".join(names),
        "sites": ",".join(s.site_id for s in chosen),
        "refit_every_days": refit_every_days,
    }
    return tasks.with_io_retries(write_outputs, config.retries)(
        out_dir, result, metrics, facts=facts
    )
