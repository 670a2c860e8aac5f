"""``evcast backtest``: rolling-origin backtests of the demand (or PV) models on the lake.

Thin: reads the lake and the site catalog, calls :func:`forecasting.backtest.engine.run_backtest`
(the same core as the backtest flow) or :func:`forecasting.backtest.pv.run_pv_backtest`, scores,
writes the output folder (contract in :mod:`forecasting.backtest.contract`) and logs the run to
MLflow.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from forecasting.cli.app import app
from forecasting.config import SiteConfig
from forecasting.errors import ConfigError, UnknownSiteError
from forecasting.settings import Settings

if TYPE_CHECKING:
    from forecasting.backtest.engine import BacktestResult
    from forecasting.backtest.grid import BacktestSpec
    from forecasting.backtest.metrics import BacktestMetrics
    from models.demand_config import DemandConfig

EXPERIMENT: Final = "evcast-backtest"
TARGETS: Final = ("demand", "pv")
_DURATION: Final = re.compile(r"^(\d+)\s*(m|min|h|d)$")
_UNITS: Final = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, *, option: str) -> timedelta:
    """Parse ``15m``, ``1h``, ``24h``, ``7d`` into a timedelta."""
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        msg = f"{option} {text!r} is not a positive duration; write e.g. '15m', '1h' or '7d'"
        raise ConfigError(msg)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_clock(text: str) -> time:
    """Parse ``HH:MM`` into a time of day."""
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        msg = f"--issue-time {text!r} is not a time of day; write it as HH:MM, e.g. '00:00'"
        raise ConfigError(msg) from exc


def select_sites(
    catalog: Sequence[SiteConfig], *, with_sessions: Sequence[str], wanted: Sequence[str]
) -> list[SiteConfig]:
    """Return the sites to backtest: ``wanted`` ones, or every catalog site that has sessions."""
    by_id = {site.site_id: site for site in catalog}
    if not wanted:
        return [by_id[s] for s in sorted(with_sessions) if s in by_id]  # the catalog has all
    unknown = [s for s in wanted if s not in by_id]
    if unknown:
        msg = (
            f"site(s) {unknown!r} are neither configured nor discovered; "
            f"known: {sorted(by_id)!r}. Run `evcast sites` or ingest their sessions first"
        )
        raise UnknownSiteError(msg)
    return [by_id[s] for s in wanted]


def _demand_config(settings: Settings, models: Sequence[str]) -> DemandConfig | None:
    from models.demand_config import load_demand_config  # noqa: PLC0415 -- lazy CLI import

    path = settings.config_dir / "demand.toml"
    if "demand" not in models or not path.exists():
        return None
    return load_demand_config(path)


def log_backtest_to_mlflow(
    settings: Settings, *, out_dir: Path, metrics: BacktestMetrics, facts: dict[str, object]
) -> str:
    """Log the run's parameters, overall scores and report to MLflow; return the run id.

    Every store call goes through :func:`forecasting.io.tracking.call_with_retries` (bounded
    retries on transient errors). MLflow is imported here, not at module level, so that other
    ``evcast`` commands do not pay its import time.
    """
    tracking = importlib.import_module("forecasting.io.tracking")
    entities = importlib.import_module("mlflow.entities")
    store = tracking.connect_tracking(
        settings.tracking_uri,
        artifact_root=settings.mlflow_dir / "artifacts",
        experiment=EXPERIMENT,
    )
    client, now = store.client, int(datetime.now().timestamp() * 1000)

    def call(what: str, action: Callable[[], Any]) -> Any:
        return tracking.call_with_retries(
            action, policy=store.retry, what=what, uri=settings.tracking_uri
        )

    run = call("create a backtest run", lambda: client.create_run(store.experiment_id))
    run_id = run.info.run_id
    scores = [
        entities.Metric(f"{row['model']}/{key}", float(value), now, 0)
        for row in metrics.overall.to_dicts()
        for key, value in row.items()
        if key != "model" and isinstance(value, int | float) and math.isfinite(value)
    ]
    params = [entities.Param(k, str(v)[:500]) for k, v in facts.items()]
    call("log backtest scores", lambda: client.log_batch(run_id, metrics=scores, params=params))
    for name in ("report.html", "metrics.json", "metrics_by_site.csv"):
        path = str(out_dir / name)
        call(f"upload {name}", lambda p=path: client.log_artifact(run_id, p))  # type: ignore[misc]
    call("close the run", lambda: client.set_terminated(run_id))
    return str(run_id)


def _print_scores(console: Console, metrics: BacktestMetrics) -> None:
    table = Table(title=f"backtest scores ({metrics.n_intervals} intervals per model)")
    columns = ["model", "mae", "nmae", "pinball", "coverage_80", "skill_mae_vs_seasonal_naive"]
    for column in columns:
        table.add_column(column)
    for row in metrics.overall.to_dicts():
        table.add_row(
            *(
                f"{row.get(c):.3f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                for c in columns
            )
        )
    console.print(table)


def _no_sites(settings: Settings, table: str, hint: str) -> ConfigError:
    msg = f"no site with {table} in the lake {str(settings.lake_dir)!r}; {hint} (check EVCAST_HOME)"
    return ConfigError(msg)


def _run_demand(
    settings: Settings, *, spec: BacktestSpec, models: list[str], wanted: list[str], bar: Progress
) -> tuple[BacktestResult, list[SiteConfig]]:
    from forecasting.backtest.engine import run_backtest  # noqa: PLC0415 -- lazy CLI import
    from forecasting.backtest.models import build_factories  # noqa: PLC0415
    from forecasting.io.catalog import load_site_catalog  # noqa: PLC0415
    from forecasting.io.lake import list_sites, read_table  # noqa: PLC0415
    from forecasting.schemas import SESSIONS_SCHEMA  # noqa: PLC0415

    sites = select_sites(
        load_site_catalog(settings),
        with_sessions=list_sites(settings.lake_dir, "sessions"),
        wanted=wanted,
    )
    if not sites:
        raise _no_sites(settings, "sessions", "run `evcast ingest sessions` first")
    sessions = read_table(
        settings.lake_dir, "sessions", SESSIONS_SCHEMA, sites=[s.site_id for s in sites]
    ).collect()
    factories = build_factories(
        models,
        sites=sites,
        resolution=spec.resolution,
        demand_config=_demand_config(settings, models),
    )
    task = bar.add_task(
        "backtest", total=len(sites) * len(models) * ((spec.end - spec.start).days + 1)
    )
    result = run_backtest(
        sessions,
        sites=sites,
        factories=factories,
        spec=spec,
        on_progress=lambda n: bar.advance(task, n),
    )
    return result, sites


def _run_pv(
    settings: Settings, *, spec: BacktestSpec, models: list[str], wanted: list[str], bar: Progress
) -> tuple[BacktestResult, list[SiteConfig]]:
    from forecasting.backtest.pv import measured_site, run_pv_backtest  # noqa: PLC0415 -- lazy
    from forecasting.io.catalog import load_site_catalog  # noqa: PLC0415
    from forecasting.io.lake import list_sites, read_table  # noqa: PLC0415
    from forecasting.schemas import PV_SCHEMA, WEATHER_SCHEMA  # noqa: PLC0415

    with_pv = set(list_sites(settings.lake_dir, "pv"))
    catalog = [s for s in load_site_catalog(settings) if s.pv and measured_site(s) in with_pv]
    sites = select_sites(catalog, with_sessions=[s.site_id for s in catalog], wanted=wanted)
    if not sites:
        raise _no_sites(settings, "a PV system and measured PV", "run `evcast ingest pv` first")
    ids = [s.site_id for s in sites]
    pv = read_table(settings.lake_dir, "pv", PV_SCHEMA, sites=[measured_site(s) for s in sites])
    weather = read_table(settings.lake_dir, "weather", WEATHER_SCHEMA, sites=ids)
    task = bar.add_task(
        "backtest", total=len(sites) * len(models) * ((spec.end - spec.start).days + 1)
    )
    result = run_pv_backtest(
        pv.collect(), weather.collect(), sites=sites, spec=spec, models=models,
        on_progress=lambda n: bar.advance(task, n),
    )  # fmt: skip
    return result, sites


def _run(
    settings: Settings, *, spec: BacktestSpec, target: str, models: list[str], wanted: list[str]
) -> tuple[BacktestResult, BacktestMetrics, list[SiteConfig]]:
    """Run the backtest of ``target`` with a progress bar on stderr, then score it."""
    from forecasting.backtest.metrics import compute_backtest_metrics  # noqa: PLC0415 -- lazy

    columns = (TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        run = _run_pv if target == "pv" else _run_demand
        result, sites = run(settings, spec=spec, models=models, wanted=wanted, bar=bar)
    metrics = compute_backtest_metrics(
        result.forecasts,
        result.actuals,
        resolution=spec.resolution,
        timezones={s.site_id: s.timezone for s in sites},
    )
    return result, metrics, sites


def _model_names(target: str, models: str | None) -> list[str]:
    from forecasting.backtest.models import MODEL_NAMES, check_model_names  # noqa: PLC0415
    from forecasting.backtest.pv import PV_MODEL_NAMES  # noqa: PLC0415 -- lazy CLI imports

    if target not in TARGETS:
        msg = f"--target {target!r} is not one of {list(TARGETS)!r}"
        raise ConfigError(msg)
    default = PV_MODEL_NAMES if target == "pv" else MODEL_NAMES
    names = [m.strip() for m in (models or ",".join(default)).split(",") if m.strip()]
    if target == "pv":
        unknown = [n for n in names if n not in PV_MODEL_NAMES]
        if unknown or not names:
            msg = f"unknown or no PV model names {unknown!r}; choose from {list(PV_MODEL_NAMES)!r}"
            raise ConfigError(msg)
    else:
        check_model_names(names)
    return names


@app.command()
def backtest(
    *,
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First issue day.")],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Last issue day (incl.).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if absent).")],
    site: Annotated[list[str] | None, typer.Option(help="Site id; repeat. Default: all.")] = None,
    resolution: Annotated[str, typer.Option(help="Interval length, e.g. 15m or 1h.")] = "1h",
    issue_time: Annotated[str, typer.Option(help="Site-local issue time, HH:MM.")] = "00:00",
    horizon: Annotated[str, typer.Option(help="Horizon on the local wall clock.")] = "24h",
    refit_every: Annotated[str, typer.Option(help="Refit cadence, e.g. 7d.")] = "7d",
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated model names. Default: all of the target's."),
    ] = None,
    target: Annotated[str, typer.Option(help="demand, or pv (the solar model).")] = "demand",
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Backtest forecasters rolling-origin and write forecasts, actuals, metrics and a report.

    Demand models: demand, seasonal_naive, persistence. PV models (--target pv, on sites with a
    PV system and measured PV; use the PV data's resolution, e.g. --resolution 15m): solar,
    clearsky_persistence.
    """
    from forecasting.backtest.grid import BacktestSpec  # noqa: PLC0415 -- lazy CLI import

    settings = Settings()
    names = _model_names(target, models)
    spec = BacktestSpec(
        start=start.date(),
        end=end.date(),
        issue_time=parse_clock(issue_time),
        horizon=parse_duration(horizon, option="--horizon"),
        resolution=parse_duration(resolution, option="--resolution"),
        refit_every=parse_duration(refit_every, option="--refit-every"),
    )
    result, metrics, sites = _run(
        settings, spec=spec, target=target, models=names, wanted=site or []
    )
    facts: dict[str, object] = {
        "target": target,
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "issue_time": spec.issue_time.isoformat("minutes"),
        "horizon": horizon,
        "resolution": resolution,
        "refit_every": refit_every,
        "models": ",".join(names),
        "sites": ",".join(s.site_id for s in sites),
        "backtest_id": uuid.uuid4().hex[:12],
    }
    _finish(settings, out=out, result=result, metrics=metrics, facts=facts, mlflow=mlflow,
            as_json=as_json, sites=sites)  # fmt: skip


def _finish(
    settings: Settings,
    *,
    out: Path,
    result: BacktestResult,
    metrics: BacktestMetrics,
    facts: dict[str, object],
    mlflow: bool,
    as_json: bool,
    sites: list[SiteConfig],
) -> None:
    """Write the report and output files, log to MLflow, print the scores."""
    from forecasting.backtest.outputs import write_backtest_outputs  # noqa: PLC0415 -- lazy
    from forecasting.backtest.report import build_report_html  # noqa: PLC0415

    html = build_report_html(
        result.forecasts,
        result.actuals,
        metrics,
        title=f"evcast backtest ({facts['target']})",
        facts=facts,
        timezones={s.site_id: s.timezone for s in sites},
        fan_model="solar" if facts["target"] == "pv" and "solar" in str(facts["models"]) else None,
    )
    paths = write_backtest_outputs(out, result, metrics, report_html=html, facts=facts)
    run_id = (
        log_backtest_to_mlflow(settings, out_dir=out, metrics=metrics, facts=facts)
        if mlflow
        else None
    )
    if as_json:
        summary = {"files": [str(p) for p in paths], "mlflow_run_id": run_id, **metrics.to_dict()}
        typer.echo(json.dumps({k: summary[k] for k in ("files", "mlflow_run_id", "overall")}))
        return
    _print_scores(Console(), metrics)
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}")
    if run_id:
        typer.echo(f"mlflow run {run_id} in experiment {EXPERIMENT!r}")
