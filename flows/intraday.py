"""The ``intraday-forecast`` flow: newest data, champion predictions, publish (e.g. hourly).

No training: each site's champion (trained by the nightly flow) forecasts from the sessions
known at ``issued_at``. A site whose champion is missing or fails its smoke check is served by
the seasonal naive baseline, marked as a fallback with the reason in the published run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow

from flows import steps, tasks
from flows.ingest import ingest_sources
from flows.runtime import build_task_runner, default_task_runner, resolve_runner_options
from forecasting.errors import ConfigError
from forecasting.pipeline_config import load_pipeline_config
from forecasting.settings import Settings


def floor_issue_time(instant: datetime, *, every: timedelta) -> datetime:
    """Round ``instant`` down to a multiple of ``every`` since the Unix epoch [UTC]."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((instant.astimezone(UTC) - epoch) // every) * every


@flow(name="intraday-forecast", validate_parameters=True, task_runner=default_task_runner())
def intraday_forecast(
    issued_at: datetime | None = None,
    config_file: Path | None = None,
    sites: list[str] | None = None,
    ingest: bool = True,
) -> steps.NightlyReport:
    """Forecast and publish every site at ``issued_at`` (default: now, floored to the cadence)."""
    settings = Settings()
    config = load_pipeline_config(config_file or settings.config_dir / "pipeline.toml")
    every = timedelta(minutes=config.forecast.issue_every_minutes)
    if issued_at is not None and issued_at.tzinfo is None:
        msg = f"issued_at {issued_at.isoformat()!r} has no time zone; give it in UTC, e.g. '...Z'"
        raise ConfigError(msg)
    issued = floor_issue_time(issued_at or datetime.now(UTC), every=every)
    sites_config = tasks.with_io_retries(tasks.read_sites_config, config.retries)(
        settings.sites_file
    )
    ingested = (
        ingest_sources(config, sites=sites_config, ingested_at=datetime.now(UTC))
        if ingest
        else steps.IngestSummary()
    )
    catalog = tasks.with_io_retries(tasks.read_site_catalog, config.retries)(settings)
    sessions = tasks.with_io_retries(tasks.read_known_sessions, config.retries)(
        settings.lake_dir, issued_at=issued
    )
    tasks.check_sessions(sessions)
    solar = tasks.with_io_retries(tasks.read_solar_sites, config.retries)(settings.lake_dir)
    chosen = steps.select_sites(
        catalog, sessions, wanted=tuple(sites or config.forecast.sites), solar_sites=solar
    )
    ready, published = tasks.forecast_and_publish(
        chosen, sessions=sessions, issued_at=issued, config=config, settings=settings
    )
    return steps.build_report(
        issued_at=issued,
        ingested=ingested,
        trained=[{} for _ in chosen],
        publications=ready,
        published=published,
        settings=settings,
    )


def run_intraday(
    issued_at: datetime | None = None, *, config_file: Path | None = None, ingest: bool = True
) -> steps.NightlyReport:
    """Run the intraday flow with the configured (or environment-selected) task runner."""
    settings = Settings()
    config = load_pipeline_config(config_file or settings.config_dir / "pipeline.toml")
    runner = build_task_runner(resolve_runner_options(config.runner))
    return intraday_forecast.with_options(task_runner=runner)(
        issued_at=issued_at, config_file=config_file, ingest=ingest
    )
