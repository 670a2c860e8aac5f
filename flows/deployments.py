"""Deployments of the flows, served by ``evcast flows serve`` against a Prefect server.

``evcast-nightly``
    ``nightly-training`` on ``[schedules] nightly_cron`` (default 01:30) in the explicit
    ``[schedules] timezone`` (default Europe/London, so the run follows local midnight across
    DST). At most one run at a time: a second one that becomes due while the first still runs
    is cancelled (``CANCEL_NEW``), since the next night's run processes everything new anyway;
    queued runs could otherwise pile up behind a slow night.
``evcast-intraday``
    ``intraday-forecast`` on ``[schedules] intraday_cron`` (default five past every hour), also
    one at a time, also ``CANCEL_NEW`` (a late hour is superseded by the next one).

Both carry the tags of ``[schedules] tags`` plus their own. Served flow runs execute in
subprocesses that import the flows anew, so their task runner comes from the environment
(``EVCAST_DASK_ADDRESS`` / ``EVCAST_DASK_WORKERS``, see :mod:`flows.runtime`); without them,
threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.intraday import intraday_forecast
from flows.nightly import nightly_training
from forecasting.pipeline_config import PipelineConfig, load_pipeline_config
from forecasting.settings import Settings

ONE_AT_A_TIME = ConcurrencyLimitConfig(
    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
)


def build_deployments(config: PipelineConfig, *, config_file: Path) -> list[RunnerDeployment]:
    """Return the nightly and intraday deployments of ``config``'s schedules."""
    schedules = config.schedules
    parameters = {"config_file": str(config_file.resolve())}
    nightly = nightly_training.to_deployment(
        name="evcast-nightly",
        schedules=[Cron(schedules.nightly_cron, timezone=schedules.timezone)],
        concurrency_limit=ONE_AT_A_TIME,
        parameters=parameters,
        tags=[*schedules.tags, "nightly"],
        description="Ingest, train, evaluate, promote, forecast and publish; one run at a time.",
    )
    intraday = intraday_forecast.to_deployment(
        name="evcast-intraday",
        schedules=[Cron(schedules.intraday_cron, timezone=schedules.timezone)],
        concurrency_limit=ONE_AT_A_TIME,
        parameters=parameters,
        tags=[*schedules.tags, "intraday"],
        description="Forecast every site with its champion (or a marked baseline); publish.",
    )
    # called outside an event loop, to_deployment returns the deployment itself (its
    # annotation also covers the awaitable it returns inside one)
    return [cast(RunnerDeployment, nightly), cast(RunnerDeployment, intraday)]


def serve_deployments(*, config_file: Path | None = None) -> None:
    """Register the deployments with the Prefect server and run their flow runs until stopped."""
    path = config_file or Settings().config_dir / "pipeline.toml"
    serve(*build_deployments(load_pipeline_config(path), config_file=path))
