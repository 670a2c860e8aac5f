"""The ``nightly-training`` flow: ingest, validate, train, evaluate, promote, forecast, publish.

For the night ``night`` (a UTC date) forecasts are issued at ``night`` 00:00 UTC from the
sessions known then (``plug_out_at < issued_at``). Per-site training and forecasting are mapped
tasks, so they spread over a Dask cluster when the runner is Dask (:mod:`flows.runtime`).

Faults and idempotency
    Publications of every site are built first and stored last, each in one transaction, so a
    crash or SIGTERM before publishing leaves the previous forecasts served and nothing half
    written. Rerunning a night on unchanged data publishes nothing new: the run id is a hash of
    the forecast's inputs and the store skips a run it already has. Training runs before any
    alias moves, and aliases move only after the model is registered (the tracking adapter's
    rule), so an unreachable MLflow store fails the run after bounded retries with no alias
    moved and nothing published.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

from prefect import flow, unmapped

from flows import steps, tasks
from flows.ingest import ingest_sources
from flows.runtime import build_task_runner, default_task_runner, resolve_runner_options
from forecasting.pipeline_config import RunParameters, load_pipeline_config
from forecasting.settings import Settings


def build_run_parameters(
    night: date | None, config_file: Path | None, sites: list[str] | None
) -> RunParameters:
    """Validate flow parameters; the night defaults to today (UTC)."""
    settings = Settings()
    return RunParameters(
        night=night or datetime.now(UTC).date(),
        config_file=config_file or settings.config_dir / "pipeline.toml",
        sites=tuple(sites or ()),
    )


@flow(name="nightly-training", validate_parameters=True, task_runner=default_task_runner())
def nightly_training(
    night: date | None = None, config_file: Path | None = None, sites: list[str] | None = None
) -> steps.NightlyReport:
    """Process one night end to end; return what was trained and published per site."""
    params = build_run_parameters(night, config_file, sites)
    config = load_pipeline_config(params.config_file)
    settings = Settings()
    issued_at = datetime.combine(params.night, time(0), tzinfo=UTC)
    sites_config = tasks.with_io_retries(tasks.read_sites_config, config.retries)(
        settings.sites_file
    )
    ingested = ingest_sources(config, sites=sites_config, ingested_at=datetime.now(UTC))
    catalog = tasks.with_io_retries(tasks.read_site_catalog, config.retries)(settings)
    sessions = tasks.with_io_retries(tasks.read_known_sessions, config.retries)(
        settings.lake_dir, issued_at=issued_at
    )
    tasks.check_sessions(sessions)
    solar = tasks.with_io_retries(tasks.read_solar_sites, config.retries)(settings.lake_dir)
    chosen = steps.select_sites(
        catalog, sessions, wanted=params.sites or config.forecast.sites, solar_sites=solar
    )
    tasks.with_io_retries(tasks.connect_mlflow, config.retries)(settings)
    trained = tasks.with_io_retries(tasks.train_site, config.retries).map(
        chosen,
        pool=unmapped(chosen),
        sessions=unmapped(sessions),
        issued_at=unmapped(issued_at),
        config=unmapped(config),
        settings=unmapped(settings),
    )
    ready, published = tasks.forecast_and_publish(
        chosen,
        sessions=sessions,
        issued_at=issued_at,
        config=config,
        settings=settings,
        wait_for=[trained],
    )
    return steps.build_report(
        issued_at=issued_at,
        ingested=ingested,
        trained=trained.result(),
        publications=ready,
        published=published,
        settings=settings,
    )


def run_nightly(
    night: date | None = None, *, config_file: Path | None = None, sites: list[str] | None = None
) -> steps.NightlyReport:
    """Run the nightly flow with the task runner the configuration (or environment) selects."""
    params = build_run_parameters(night, config_file, sites)
    config = load_pipeline_config(params.config_file)
    runner = build_task_runner(resolve_runner_options(config.runner))
    return nightly_training.with_options(task_runner=runner)(
        night=params.night, config_file=params.config_file, sites=list(params.sites)
    )
