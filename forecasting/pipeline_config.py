"""Pipeline configuration of the Prefect flows (``configs/pipeline.toml``).

What the nightly and intraday flows ingest (``[[sources]]``), how they train and forecast
(``[forecast]``, ``[training]``), where per-site work runs (``[runner]``) and when the served
deployments are scheduled (``[schedules]``). Loaded into frozen pydantic models that forbid
unknown keys, so a typo fails at load time. Runtime settings (paths, URIs) stay in the
environment (:mod:`forecasting.settings`); only the runner may be overridden from the
environment, with ``EVCAST_DASK_ADDRESS`` and ``EVCAST_DASK_WORKERS``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from forecasting.config import SITE_ID_PATTERN, FrozenModel, check_timezone, load_config
from forecasting.settings import REPO_ROOT

SourceKind = Literal["sessions", "weather", "pv"]
RunnerKind = Literal["thread", "dask"]

_CRON_FIELD: Final = re.compile(r"^[0-9*/,\-]+$")


class Source(FrozenModel):
    """One input file (or folder of files) the flows ingest."""

    path: Path = Field(description="File or folder, relative to the repository root.")
    kind: SourceKind = Field(description="Which lake table the source feeds.")
    format: str = Field(description="Reader format, e.g. 'chargeplace', 'psm3', 'pvdaq'.")
    site: str | None = Field(
        default=None,
        pattern=SITE_ID_PATTERN,
        description="Site id of weather and PV sources (sessions carry their own).",
    )
    column_map: Path | None = Field(
        default=None, description="Column-map TOML of a generic 'csv' source, repo-relative."
    )
    weather_kind: Literal["observation", "forecast"] = Field(
        default="observation", description="Weather rows are observations or forecasts as issued."
    )

    @model_validator(mode="after")
    def _site_for_solar(self) -> Self:
        if self.kind != "sessions" and self.site is None:
            msg = f'source {str(self.path)!r} of kind {self.kind!r} needs `site = "<site id>"`'
            raise ValueError(msg)
        return self

    def files(self, root: Path = REPO_ROOT) -> list[Path]:
        """Return the files of this source, sorted; a folder yields its files (not hidden)."""
        full = self.path if self.path.is_absolute() else root / self.path
        if full.is_dir():
            return sorted(p for p in full.iterdir() if p.is_file() and not p.name.startswith("."))
        return [full]


class ForecastOptions(FrozenModel):
    """Resolution, horizon and site selection of published forecasts."""

    resolution_minutes: Annotated[
        int, Field(ge=5, le=1440, description="Interval length of forecasts [min].")
    ] = 60
    horizon_hours: Annotated[
        int, Field(ge=1, le=168, description="Forecast horizon from issued_at [h].")
    ] = 48
    sites: tuple[Annotated[str, Field(pattern=SITE_ID_PATTERN)], ...] = Field(
        default=(), description="Sites to forecast; empty: every site with sessions."
    )
    issue_every_minutes: Annotated[
        int, Field(ge=5, le=1440, description="Intraday issue-time rounding [min].")
    ] = 60
    valid_hours: Annotated[
        int, Field(ge=1, le=168, description="How long a nightly run stays current [h].")
    ] = 24

    @property
    def resolution(self) -> timedelta:
        """Interval length of forecasts."""
        return timedelta(minutes=self.resolution_minutes)

    @property
    def horizon(self) -> timedelta:
        """Forecast horizon from ``issued_at``."""
        return timedelta(hours=self.horizon_hours)


class TrainingOptions(FrozenModel):
    """Champion/challenger training of the nightly flow."""

    demand_config: Path = Field(
        default=Path("configs/demand.toml"),
        description="LightGBM demand model settings, relative to the repository root.",
    )
    evaluation_days: Annotated[
        int, Field(ge=1, le=90, description="Rolling-origin evaluation window [d].")
    ] = 7
    search: bool = Field(
        default=False,
        description=(
            "Run the Optuna hyperparameter search (budget: [search] of the demand config) "
            "before training each challenger; the champion rule still decides what serves."
        ),
    )


class RunnerOptions(FrozenModel):
    """Where per-site tasks run: threads in the flow's process, or a Dask cluster."""

    kind: RunnerKind = "thread"
    address: str | None = Field(
        default=None, description="Scheduler address of an existing Dask cluster."
    )
    n_workers: Annotated[int, Field(ge=1, le=256, description="Workers of a LocalCluster [-].")] = 2
    threads_per_worker: Annotated[int, Field(ge=1, le=64, description="[-]")] = 1
    max_workers: Annotated[
        int, Field(ge=1, le=64, description="Threads of the default thread runner [-].")
    ] = 2


class ScheduleOptions(FrozenModel):
    """Cron schedules of the served deployments, in an explicit IANA time zone."""

    timezone: str = "Europe/London"
    nightly_cron: str = "30 1 * * *"
    intraday_cron: str = "5 * * * *"
    tags: tuple[str, ...] = ("evcast",)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("nightly_cron", "intraday_cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            msg = f"cron {value!r} must have five numeric fields, e.g. '30 1 * * *'"
            raise ValueError(msg)
        return value


class RetryOptions(FrozenModel):
    """Retries of I/O tasks (files, lake, MLflow, forecast store); core tasks never retry."""

    io_retries: Annotated[int, Field(ge=0, le=10, description="Retries after a failure [-].")] = 3
    backoff_seconds: Annotated[
        float, Field(ge=0, le=600, description="First retry delay, doubled each time [s].")
    ] = 2.0
    jitter_factor: Annotated[
        float, Field(ge=0, le=1, description="Random extra delay, share of the delay [-].")
    ] = 0.2


class PipelineConfig(FrozenModel):
    """Everything the flows need besides runtime settings."""

    sources: tuple[Source, ...] = ()
    forecast: ForecastOptions = ForecastOptions()
    training: TrainingOptions = TrainingOptions()
    runner: RunnerOptions = RunnerOptions()
    retries: RetryOptions = RetryOptions()
    schedules: ScheduleOptions = ScheduleOptions()


class RunParameters(FrozenModel):
    """Parameters of one flow run, validated before any work starts."""

    night: date = Field(description="The night processed; forecasts are issued at its 00:00 UTC.")
    config_file: Path
    sites: tuple[Annotated[str, Field(pattern=SITE_ID_PATTERN)], ...] = ()

    @field_validator("night")
    @classmethod
    def _plausible(cls, value: date) -> date:
        if not date(2000, 1, 1) <= value <= date(2100, 1, 1):
            msg = f"night {value.isoformat()!r} is outside 2000-01-01..2100-01-01"
            raise ValueError(msg)
        return value


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Load and validate ``pipeline.toml``; raise :class:`ConfigError` naming the file."""
    return load_config(path, PipelineConfig)
