"""``evcast train`` and ``evcast models``: train, evaluate, register and promote; list the registry.

Thin: reads the lake and the site catalog, calls :func:`forecasting.training.train_site` (the
same code path as the nightly flow) per site, and prints what was decided. The MLflow store is
``Settings.tracking_uri`` (default: SQLite under EVCAST_HOME/mlflow, artifacts beside it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Final
from zoneinfo import ZoneInfo

import polars as pl
import typer

from forecasting.cli.app import app
from forecasting.cli.backtest import parse_duration, select_sites
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, ForecastingError
from forecasting.settings import Settings

if TYPE_CHECKING:
    from forecasting.backtest.engine import ForecasterFactory
    from forecasting.io.tracking import Tracking
    from forecasting.training import TrainingSummary

MODEL_CHOICES: Final = ("demand", "seasonal_naive", "persistence")
"""The names ``--model`` accepts, spelled out so that ``--help`` needs no model import.

Kept equal to :data:`forecasting.backtest.models.MODEL_NAMES` (a test checks it).
"""


def open_tracking(settings: Settings) -> Tracking:
    """Connect to the MLflow store of ``settings`` (artifacts under EVCAST_HOME/mlflow)."""
    from forecasting.io.tracking import connect_tracking  # noqa: PLC0415 -- lazy CLI import

    return connect_tracking(settings.tracking_uri, artifact_root=settings.mlflow_dir / "artifacts")


def parse_issued_at(text: str | None) -> datetime | None:
    """Parse an ISO 8601 instant; a value without offset is taken as UTC."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"--issued-at {text!r} is not an ISO 8601 instant; write e.g. '2019-08-01T00:00Z'"
        raise ConfigError(msg) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def default_issued_at(sessions: pl.DataFrame, *, site: SiteConfig, now: datetime) -> datetime:
    """Return the site-local midnight after the site's last session ended, or ``now`` if earlier.

    So training on a historical lake uses all of it, and a live lake trains up to now.
    """
    last = sessions.filter(pl.col("site_id") == site.site_id)["plug_out_at"].max()
    if last is None:
        return now
    zone = ZoneInfo(site.timezone)
    next_day = last.astimezone(zone).date() + timedelta(days=1)  # type: ignore[union-attr]
    midnight = datetime.combine(next_day, time(0), tzinfo=zone).astimezone(UTC)
    return min(midnight, now)


def _factory(
    model: str, *, settings: Settings, sites: Sequence[SiteConfig], resolution: timedelta
) -> ForecasterFactory:
    from forecasting.backtest.models import build_factories  # noqa: PLC0415 -- lazy CLI import
    from models.demand_config import load_demand_config  # noqa: PLC0415

    path = settings.config_dir / "demand.toml"
    demand_config = load_demand_config(path) if model == "demand" and path.exists() else None
    factories = build_factories(
        [model], sites=sites, resolution=resolution, demand_config=demand_config
    )
    return factories[model]


def _describe(summary: TrainingSummary) -> str:
    role = "champion" if summary.decision.promote else "challenger"
    text = (
        f"{summary.site_id}: {summary.model_name} version {summary.version} is {role}: "
        f"{summary.decision.reason}"
    )
    if summary.champion_problem:
        text += f" (the champion was unusable: {summary.champion_problem})"
    return text


def _as_dict(summary: TrainingSummary) -> dict[str, object]:
    facts = dataclasses.asdict(summary)
    facts["promoted"] = summary.decision.promote
    return facts


def _read_sites(settings: Settings, wanted: Sequence[str]) -> tuple[list[SiteConfig], pl.DataFrame]:
    from forecasting.io.catalog import load_site_catalog  # noqa: PLC0415 -- lazy CLI import
    from forecasting.io.lake import list_sites, read_table  # noqa: PLC0415
    from forecasting.schemas import SESSIONS_SCHEMA  # noqa: PLC0415

    sites = select_sites(
        load_site_catalog(settings),
        with_sessions=list_sites(settings.lake_dir, "sessions"),
        wanted=wanted,
    )
    if not sites:
        msg = (
            f"no site with sessions in the lake {str(settings.lake_dir)!r}; "
            "run `evcast ingest sessions` first (and check EVCAST_HOME)"
        )
        raise ConfigError(msg)
    sessions = read_table(
        settings.lake_dir, "sessions", SESSIONS_SCHEMA, sites=[s.site_id for s in sites]
    ).collect()
    return sites, sessions


@app.command()
def train(
    *,
    site: Annotated[list[str] | None, typer.Option(help="Site id; repeat. Default: all.")] = None,
    model: Annotated[str, typer.Option(help=f"One of {', '.join(MODEL_CHOICES)}.")] = "demand",
    issued_at: Annotated[
        str | None,
        typer.Option(
            help="Train on data known then (ISO 8601, UTC if no offset). Default: "
            "the site-local midnight after the site's last session, or now."
        ),
    ] = None,
    margin: Annotated[float, typer.Option(help="Pinball improvement to promote [-].")] = 0.02,
    evaluation_days: Annotated[
        int, typer.Option(help="Held-back daily issues in the evaluation.")
    ] = 14,
    resolution: Annotated[str, typer.Option(help="Interval length, e.g. 1h.")] = "1h",
    horizon: Annotated[str, typer.Option(help="Forecast horizon, e.g. 24h.")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Train a model per site, evaluate it against the champion, register it and promote it."""
    from forecasting.training import TrainingOptions, train_site  # noqa: PLC0415 -- lazy import

    settings = Settings()
    options = TrainingOptions(
        margin=margin,
        evaluation_days=evaluation_days,
        resolution=parse_duration(resolution, option="--resolution"),
        horizon=parse_duration(horizon, option="--horizon"),
    )
    sites, sessions = _read_sites(settings, site or [])
    factory = _factory(model, settings=settings, sites=sites, resolution=options.resolution)
    tracking = open_tracking(settings)
    given, now = parse_issued_at(issued_at), datetime.now(UTC)
    results: list[dict[str, object]] = []
    failed = 0
    for one in sites:
        at = given or default_issued_at(sessions, site=one, now=now)
        try:
            summary = train_site(
                sessions,
                site=one,
                forecaster_factory=factory,
                tracking=tracking,
                issued_at=at,
                options=options,
            )
        except ForecastingError as exc:
            failed += 1
            results.append({"site_id": one.site_id, "error": str(exc)})
            typer.echo(f"{one.site_id}: not trained: {exc}", err=True)
            continue
        results.append(_as_dict(summary))
        if not as_json:
            typer.echo(_describe(summary))
    if as_json:
        typer.echo(json.dumps(results, default=str))
    if failed:
        raise typer.Exit(code=2)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """List each site's champion and challenger with their evaluation scores."""
    from forecasting.io.tracking import list_models  # noqa: PLC0415 -- lazy CLI imports
    from forecasting.registry import MODEL_NAME_PREFIX  # noqa: PLC0415

    summaries = list_models(open_tracking(Settings()), prefix=MODEL_NAME_PREFIX)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(s) for s in summaries]))
        return
    if not summaries:
        typer.echo("no models registered yet; run `evcast train`")
        return
    width = max(len(entry.name) for entry in summaries)
    for entry in summaries:
        for role, version in (("champion", entry.champion), ("challenger", entry.challenger)):
            if version is None:
                typer.echo(f"{entry.name:{width}}  {role:10}  -")
                continue
            score = "n/a" if version.score is None else f"{version.score:.4f}"
            typer.echo(
                f"{entry.name:{width}}  {role:10}  v{version.version:<4} "
                f"{version.model_kind or '?':15} pinball {score} kWh  "
                f"trained at {version.trained_at or '?'}"
            )
