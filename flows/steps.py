"""Site-level steps the flows map over, as plain functions (no Prefect inside).

Each step wires one or two core functions and adapters for one site: which forecaster serves
it (the champion, or a marked baseline when the champion is missing or fails its smoke
check), the horizon's intervals, and the shape of a :class:`ForecastRun` to publish. No model
logic lives here. Being plain functions, they are what ``bench/bench_flows.py`` calls directly
to measure the flows' orchestration overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from flows.solar_steps import build_pv_target
from forecasting.backtest.pv import measured_site
from forecasting.config import SiteConfig
from forecasting.errors import ForecastingError, SchemaError, StoreError, UnknownSiteError
from forecasting.ingest.summary import IngestSummary
from forecasting.io.tracking import (
    CHAMPION,
    Tracking,
    connect_tracking,
    get_version,
    load_model_by_alias,
    read_aliases,
)
from forecasting.io.tracking_model import ModelSmokeCheckError
from forecasting.pipeline_config import PipelineConfig
from forecasting.publication.contract import (
    PUBLISHED_DECIMALS,
    ForecastRun,
    ModelIdentity,
    Publication,
    TargetForecast,
)
from forecasting.registry import build_model_name, compute_frame_fingerprint
from forecasting.schemas import PV_SCHEMA, WEATHER_SCHEMA
from forecasting.settings import REPO_ROOT, Settings
from forecasting.training import TrainingOptions, select_known_sessions, train_site
from models.base import Forecaster
from models.baselines import SeasonalNaive
from models.demand import DemandForecaster
from models.demand_config import DemandConfig, load_demand_config
from models.demand_search import search_demand_config

BASELINE_IDENTITY: Final = ModelIdentity(name="seasonal_naive", version="1", alias=None)
NO_DEMAND_IDENTITY: Final = ModelIdentity(name="no_demand", version="0", alias=None)
NO_DEMAND_REASON: Final = (
    "no charging sessions known at issue time: demand published as 0 kWh (PV-only site)"
)
"""A PV-only site (PV system, no sessions) still publishes a run: the contract requires a
demand target, so its demand is 0 kWh, marked, and net load is then minus PV."""


@dataclass(frozen=True)
class ServingModel:
    """The forecaster that serves a site, who it is, and why it stands in (if it does)."""

    forecaster: Forecaster
    identity: ModelIdentity
    fallback_reason: str | None = None


@dataclass
class NightlyReport:
    """What one flow run did: the ingest balance and, per site, training and publication."""

    issued_at: datetime
    ingested: IngestSummary
    sites: dict[str, dict[str, object]] = field(default_factory=dict)
    mlflow_uri: str = ""
    store_url: str = ""

    @property
    def published(self) -> list[str]:
        """Sites that got a new run in the forecast store."""
        return [s for s, facts in self.sites.items() if facts.get("published")]


def repo_path(path: Path) -> Path:
    """Resolve a configured path: absolute as is, relative from the repository root."""
    return path if path.is_absolute() else REPO_ROOT / path


def select_sites(
    catalog: Sequence[SiteConfig],
    sessions: pl.DataFrame,
    *,
    wanted: Sequence[str] = (),
    solar_sites: Sequence[str] = (),
) -> list[SiteConfig]:
    """Return the sites to process: ``wanted`` ones, else every catalog site with sessions.

    Without ``wanted``, a site with a PV system whose weather or measured PV is in the lake
    (its id, or its ``measured_pv_site``, among ``solar_sites``) is processed too.
    """
    by_id = {site.site_id: site for site in catalog}
    if wanted:
        unknown = sorted(set(wanted) - set(by_id))
        if unknown:
            msg = (
                f"sites {unknown!r} are neither configured nor discovered; "
                "run `evcast sites` to list known sites"
            )
            raise UnknownSiteError(msg)
        return [by_id[s] for s in wanted]
    present = set(sessions["site_id"].unique().to_list())
    solar = set(solar_sites)
    return [
        site
        for site in catalog
        if site.site_id in present
        or (site.pv is not None and {site.site_id, measured_site(site)} & solar)
    ]


def has_sessions(sessions: pl.DataFrame, *, site: SiteConfig) -> bool:
    """Whether ``sessions`` hold any session of ``site``."""
    return not sessions.filter(pl.col("site_id") == site.site_id).is_empty()


def build_interval_starts(
    issued_at: datetime, *, horizon: timedelta, resolution: timedelta
) -> pl.Series:
    """Return the interval starts ``[issued_at, issued_at + horizon)`` at ``resolution`` [UTC]."""
    return pl.datetime_range(
        issued_at, issued_at + horizon, resolution, closed="left", time_zone="UTC", eager=True
    ).alias("interval_start")


def open_tracking(settings: Settings) -> Tracking:
    """Connect to the MLflow store of ``settings`` (artifacts under EVCAST_HOME)."""
    return connect_tracking(settings.tracking_uri, artifact_root=settings.mlflow_dir / "artifacts")


def load_serving_model(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: PipelineConfig,
    settings: Settings,
) -> ServingModel:
    """Return the site's champion, or the baseline (marked) when it is missing or broken.

    An unreachable MLflow store is not a reason to fall back: its :class:`StoreError` fails the
    task, which retries, so a flaky store does not silently degrade forecasts.
    """
    name = build_model_name(site.site_id)
    try:
        loaded = load_model_by_alias(open_tracking(settings), name=name, alias=CHAMPION)
    except ModelSmokeCheckError as exc:
        reason = f"champion of {name!r} failed its smoke check: {exc}"
        return build_baseline(
            sessions, site=site, issued_at=issued_at, config=config, reason=reason
        )
    if loaded is None:
        reason = f"no champion registered for {name!r}"
        return build_baseline(
            sessions, site=site, issued_at=issued_at, config=config, reason=reason
        )
    identity = ModelIdentity(name=loaded.name, version=loaded.version, alias=CHAMPION)
    return ServingModel(loaded.model.forecaster, identity)


def find_trained_version(
    tracking: Tracking, *, name: str, fingerprint: str, issued_at: datetime
) -> str | None:
    """Return the aliased version already trained on these data for this night, if any."""
    for version in sorted(set(read_aliases(tracking, name).values())):
        tags = get_version(tracking, name=name, version=version).tags
        same_data = tags.get("data_fingerprint") == fingerprint
        if same_data and tags.get("issued_at") == issued_at.isoformat():
            return version
    return None


def choose_demand_config(
    sessions: pl.DataFrame, *, site: SiteConfig, issued_at: datetime, config: PipelineConfig
) -> DemandConfig:
    """Return the demand settings for a challenger: the file's, or searched when configured.

    With ``[training] search = true`` the Optuna search of :mod:`models.demand_search` tunes
    the LightGBM hyperparameters on the data known at ``issued_at`` [UTC], within the time
    budget of the demand config's ``[search]`` table.
    """
    demand = load_demand_config(repo_path(config.training.demand_config))
    if not config.training.search:
        return demand
    tuned, _loss = search_demand_config(sessions, site=site, issued_at=issued_at, config=demand)
    return tuned


def train_demand(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: PipelineConfig,
    settings: Settings,
    pool: Sequence[SiteConfig] = (),
) -> dict[str, object]:
    """Train, evaluate, register and maybe promote a site's demand model; return the facts.

    ``sessions`` are every site's known sessions and ``pool`` the sites a pooled (global)
    model may learn from when this site has too little history of its own.

    Skipped when an aliased version was already trained for this night on the same sessions
    (a rerun changes nothing). A site whose data cannot train a model (e.g. too little
    history) is reported and keeps its current champion; a store error propagates.
    """
    if not has_sessions(sessions, site=site):
        return {"trained": False, "note": "no sessions: demand not trained (PV-only site)"}
    tracking = open_tracking(settings)
    name = build_model_name(site.site_id)
    try:
        known = select_known_sessions(sessions, site=site, issued_at=issued_at)
    except SchemaError as exc:
        return {"trained": False, "problem": str(exc)}
    fingerprint = compute_frame_fingerprint(known, ignore=("ingested_at",))
    done = find_trained_version(tracking, name=name, fingerprint=fingerprint, issued_at=issued_at)
    if done is not None:
        return {"trained": False, "version": done, "note": "already trained on these data"}
    demand = choose_demand_config(sessions, site=site, issued_at=issued_at, config=config)
    options = TrainingOptions(
        evaluation_days=config.training.evaluation_days, resolution=config.forecast.resolution
    )
    try:
        summary = train_site(
            sessions,
            site=site,
            forecaster_factory=lambda _site: DemandForecaster(demand, pool_sites=pool),
            tracking=tracking,
            issued_at=issued_at,
            options=options,
        )
    except StoreError:
        raise
    except ForecastingError as exc:
        return {"trained": False, "problem": str(exc)}
    return {
        "trained": True,
        "version": summary.version,
        "promoted": summary.decision.promote,
        "decision": summary.decision.reason,
    }


def build_baseline(
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: PipelineConfig,
    reason: str,
) -> ServingModel:
    """Fit the seasonal naive baseline that stands in for a missing or broken champion."""
    baseline = SeasonalNaive(resolution=config.forecast.resolution)
    baseline.fit(sessions, site=site, issued_at=issued_at)
    return ServingModel(baseline, BASELINE_IDENTITY, reason)


def build_demand_target(
    serving: ServingModel | None,
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    interval_starts: pl.Series,
) -> TargetForecast:
    """Forecast demand [kWh per interval]; 0 kWh, marked, without a serving model (PV-only)."""
    if serving is None:
        zeros = pl.DataFrame({"interval_start": interval_starts}).with_columns(
            pl.lit(0.0).alias(q) for q in ("p10", "p50", "p90")
        )
        return TargetForecast(zeros, NO_DEMAND_IDENTITY, NO_DEMAND_REASON)
    frame = serving.forecaster.predict(
        sessions, site=site, issued_at=issued_at, interval_starts=interval_starts
    )
    return TargetForecast(
        frame.select("interval_start", pl.col("p10", "p50", "p90").round(PUBLISHED_DECIMALS)),
        serving.identity,
        serving.fallback_reason,
    )


def build_forecast_run(
    serving: ServingModel | None,
    sessions: pl.DataFrame,
    *,
    site: SiteConfig,
    issued_at: datetime,
    config: PipelineConfig,
    weather: pl.DataFrame | None = None,
    pv: pl.DataFrame | None = None,
) -> ForecastRun:
    """Forecast a site over the configured horizon as a run ready to publish.

    Demand comes from ``serving`` (None: a PV-only site, demand 0 kWh, marked); a site with a
    PV system also gets a ``pv`` target from its ``weather`` and measured ``pv`` (lake tables,
    see :func:`build_pv_target`; absent frames mean none known, so clear-sky physics).
    """
    res = config.forecast.resolution
    starts = build_interval_starts(issued_at, horizon=config.forecast.horizon, resolution=res)
    targets = {
        "demand": build_demand_target(
            serving, sessions, site=site, issued_at=issued_at, interval_starts=starts
        )
    }
    solar = build_pv_target(
        weather if weather is not None else pl.DataFrame(schema=WEATHER_SCHEMA),
        pv if pv is not None else pl.DataFrame(schema=PV_SCHEMA),
        site=site,
        issued_at=issued_at,
        interval_starts=starts,
        resolution=res,
    )
    if solar is not None:
        targets["pv"] = solar
    site_sessions = sessions.filter(pl.col("site_id") == site.site_id)
    cutoff = site_sessions["plug_out_at"].max() if site_sessions.height else None
    return ForecastRun(
        site_id=site.site_id,
        issued_at=issued_at,
        data_cutoff=cutoff if isinstance(cutoff, datetime) else issued_at,
        resolution=res,
        targets=targets,
        expires_at=issued_at + timedelta(hours=config.forecast.valid_hours),
    )


def build_report(
    *,
    issued_at: datetime,
    ingested: IngestSummary,
    trained: Sequence[dict[str, object]],
    publications: Sequence[Publication],
    published: Sequence[bool],
    settings: Settings,
) -> NightlyReport:
    """Collect per-site facts of a run for the CLI and the flow's return value."""
    report = NightlyReport(
        issued_at,
        ingested,
        mlflow_uri=settings.tracking_uri,
        store_url=settings.forecast_store_url,
    )
    for facts, publication, new in zip(trained, publications, published, strict=True):
        models = publication.targets["demand"].models["demand"]
        solar = publication.targets.get("pv")
        report.sites[publication.site_id] = {
            **facts,
            "run_id": publication.run_id,
            "published": new,
            "model": f"{models.name} v{models.version}",
            "fallback_reason": publication.targets["demand"].fallback_reason,
            **(
                {
                    "pv_model": f"{solar.models['pv'].name} v{solar.models['pv'].version}",
                    "pv_fallback_reason": solar.fallback_reason,
                }
                if solar is not None
                else {}
            ),
        }
    return report
