"""Prefect tasks of the evcast flows: each body calls one adapter or one core function.

I/O tasks (files, lake, MLflow, forecast store) retry with exponential backoff; the flows set
the count and base delay from ``[retries]`` of ``configs/pipeline.toml`` through
:func:`with_io_retries`. Core tasks never retry: a bug does not fix itself. No task caches its
inputs (``NO_CACHE``): inputs are large frames, and idempotency comes from the stores (the lake
upserts by key, the forecast store keys runs on a content hash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypedDict, TypeVar

import polars as pl
from prefect import Task, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows import solar_steps, steps
from forecasting.config import SiteConfig, SitesConfig, load_sites
from forecasting.ingest.pv import read_pv
from forecasting.ingest.solar_sources import load_weather_column_map
from forecasting.ingest.summary import IngestSummary
from forecasting.ingest.weather import SolarRead, read_weather
from forecasting.io.catalog import ingest_session_file, load_site_catalog
from forecasting.io.forecast_store import open_store, publish_run
from forecasting.io.lake import UpsertResult, list_sites, read_table, upsert_table
from forecasting.io.quarantine import write_quarantine
from forecasting.pipeline_config import PipelineConfig, RetryOptions, Source
from forecasting.publication.contract import Publication
from forecasting.publication.targets import build_publication
from forecasting.schemas import (
    PV_KEY,
    PV_SCHEMA,
    SESSIONS_SCHEMA,
    WEATHER_KEY,
    WEATHER_SCHEMA,
    validate_frame,
)
from forecasting.settings import Settings

T = TypeVar("T")


class _RetryKeywords(TypedDict, total=False):
    """Retry keywords of ``prefect.task`` (typed, so the decorated tasks keep their types)."""

    retries: int
    retry_delay_seconds: Callable[[int], list[float]]


_IO: Final[_RetryKeywords] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2.0),
}
_CORE: Final[_RetryKeywords] = {"retries": 0}


def with_io_retries(io_task: Task[..., T], options: RetryOptions) -> Task[..., T]:
    """Return ``io_task`` with the retry count and exponential backoff of ``options``."""
    return io_task.with_options(
        retries=options.io_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=options.backoff_seconds),
        retry_jitter_factor=options.jitter_factor,
    )


@task(name="read-sites-config", cache_policy=NO_CACHE, **_IO)
def read_sites_config(sites_file: Path) -> SitesConfig:
    """Load the configured sites (``sites.toml``)."""
    return load_sites(sites_file)


@task(name="ingest-session-file", cache_policy=NO_CACHE, **_IO)
def ingest_sessions(
    path: Path,
    *,
    fmt: str,
    settings: Settings,
    sites: SitesConfig,
    ingested_at: datetime,
    column_map: Path | None,
) -> IngestSummary:
    """Read, validate and store one session file; return its balance.

    Storing is idempotent, so a retry after a failure half-way stores nothing twice.
    """
    read, _stored = ingest_session_file(
        path,
        fmt=fmt,
        settings=settings,
        sites=sites,
        ingested_at=ingested_at,
        column_map=column_map,
    )
    return read.summary


@task(name="read-solar-file", cache_policy=NO_CACHE, **_IO)
def read_solar_file(
    path: Path,
    *,
    source: Source,
    site: SiteConfig,
    ingested_at: datetime,
    column_map: Path | None,
) -> SolarRead:
    """Read and flag one weather or measured-PV file of a site."""
    if source.kind == "pv":
        return read_pv(path, site=site, fmt=source.format, ingested_at=ingested_at)  # type: ignore[arg-type]
    return read_weather(
        path,
        site=site,
        fmt=source.format,  # type: ignore[arg-type]
        ingested_at=ingested_at,
        kind=source.weather_kind,
        column_map=load_weather_column_map(column_map) if column_map else None,
    )


@task(name="upsert-lake-rows", cache_policy=NO_CACHE, **_IO)
def upsert_rows(lake_dir: Path, rows: pl.DataFrame, *, table: str) -> UpsertResult:
    """Insert or replace weather or PV rows in the lake, keyed on the table's key."""
    schema, key = (WEATHER_SCHEMA, WEATHER_KEY) if table == "weather" else (PV_SCHEMA, PV_KEY)
    return upsert_table(lake_dir, table, rows, schema=schema, key=key)


@task(name="write-quarantine", cache_policy=NO_CACHE, **_IO)
def store_quarantine(quarantine_dir: Path, rows: pl.DataFrame, *, content_hash: str) -> Path:
    """Write the quarantined rows of one input file (replacing an earlier copy of them)."""
    return write_quarantine(quarantine_dir, rows, content_hash=content_hash)


@task(name="read-site-catalog", cache_policy=NO_CACHE, **_IO)
def read_site_catalog(settings: Settings) -> list[SiteConfig]:
    """Return configured and discovered sites."""
    return load_site_catalog(settings)


@task(name="read-known-sessions", cache_policy=NO_CACHE, **_IO)
def read_known_sessions(lake_dir: Path, *, issued_at: datetime) -> pl.DataFrame:
    """Read the lake's sessions known at ``issued_at`` (``plug_out_at < issued_at``)."""
    return (
        read_table(lake_dir, "sessions", SESSIONS_SCHEMA)
        .filter(pl.col("plug_out_at") < issued_at)
        .collect()
    )


@task(name="read-solar-sites", cache_policy=NO_CACHE, **_IO)
def read_solar_sites(lake_dir: Path) -> list[str]:
    """Return the site ids with weather or measured PV in the lake."""
    return sorted(set(list_sites(lake_dir, "weather")) | set(list_sites(lake_dir, "pv")))


@task(name="check-sessions", cache_policy=NO_CACHE, **_CORE)
def check_sessions(sessions: pl.DataFrame) -> int:
    """Check the sessions against the canonical schema; return how many there are."""
    validate_frame(sessions, SESSIONS_SCHEMA, name="sessions")
    return sessions.height


@task(name="connect-mlflow", cache_policy=NO_CACHE, **_IO)
def connect_mlflow(settings: Settings) -> str:
    """Open the MLflow store once (creating the experiment); return its tracking URI."""
    return steps.open_tracking(settings).tracking_uri


@task(name="train-site", cache_policy=NO_CACHE, **_IO)
def train_site(
    site: SiteConfig,
    *,
    sessions: pl.DataFrame,
    issued_at: datetime,
    config: PipelineConfig,
    settings: Settings,
    pool: Sequence[SiteConfig] = (),
) -> dict[str, object]:
    """Train a challenger, evaluate it against the champion, register it, maybe promote it."""
    return steps.train_demand(
        sessions, site=site, issued_at=issued_at, config=config, settings=settings, pool=pool
    )


@task(name="forecast-site", cache_policy=NO_CACHE, **_IO)
def forecast_site(
    site: SiteConfig,
    *,
    sessions: pl.DataFrame,
    issued_at: datetime,
    config: PipelineConfig,
    settings: Settings,
) -> Publication:
    """Forecast a site with its champion (or a marked baseline), ready to publish.

    Loads the champion and, for a PV site, its weather and measured PV from the lake (I/O:
    this is why the task retries), forecasts demand and PV, and derives the served targets
    (net load, headroom) with :func:`build_publication`; nothing is stored here. A PV-only
    site (no sessions) has no champion: its demand is published as 0 kWh, marked.
    """
    serving = (
        steps.load_serving_model(
            sessions, site=site, issued_at=issued_at, config=config, settings=settings
        )
        if steps.has_sessions(sessions, site=site)
        else None
    )
    weather, pv = solar_steps.read_site_solar(settings.lake_dir, site=site)
    run = steps.build_forecast_run(
        serving, sessions, site=site, issued_at=issued_at, config=config, weather=weather, pv=pv
    )
    return build_publication(run, site=site)


@task(name="open-forecast-store", cache_policy=NO_CACHE, **_IO)
def open_forecast_store(store_url: str) -> str:
    """Open (and create, once, before parallel publishers) the forecast store; return its URL."""
    open_store(store_url)
    return store_url


@task(name="publish-forecast", cache_policy=NO_CACHE, **_IO)
def publish_forecast(publication: Publication, *, store_url: str, created_at: datetime) -> bool:
    """Store a run atomically; False when the same run was already published."""
    return publish_run(open_store(store_url), publication, created_at=created_at)


def forecast_and_publish(
    chosen: list[SiteConfig],
    *,
    sessions: pl.DataFrame,
    issued_at: datetime,
    config: PipelineConfig,
    settings: Settings,
    wait_for: list[Any] | None = None,
) -> tuple[list[Publication], list[bool]]:
    """Map forecasting over the sites, then publish each run; shared by nightly and intraday.

    Runs inside a flow: forecasts are mapped tasks, the store is opened once before the
    parallel publishers, and each publication is its own retried I/O task.
    """
    forecasts = with_io_retries(forecast_site, config.retries).map(
        chosen,
        sessions=unmapped(sessions),
        issued_at=unmapped(issued_at),
        config=unmapped(config),
        settings=unmapped(settings),
        wait_for=wait_for,
    )
    ready = forecasts.result()
    with_io_retries(open_forecast_store, config.retries)(settings.forecast_store_url)
    published = with_io_retries(publish_forecast, config.retries).map(
        ready,
        store_url=unmapped(settings.forecast_store_url),
        created_at=unmapped(datetime.now(UTC)),
    )
    return ready, published.result()
