"""``evcast flows``: run the Prefect flows directly (no server), or serve them on a schedule.

``evcast flows run nightly --date 2019-08-31`` runs the nightly flow in this process. Without
``PREFECT_API_URL`` Prefect starts a temporary local server for the run (its ephemeral mode);
``PREFECT_HOME`` defaults to ``<EVCAST_HOME>/prefect`` so nothing is written elsewhere.
``evcast flows serve`` registers the deployments (cron schedules in an explicit time zone,
one nightly run at a time) with the Prefect server of ``PREFECT_API_URL`` and runs their flow
runs until stopped.

Prefect is imported inside the commands, after ``PREFECT_HOME`` is set: Prefect reads its
settings at import, and importing it is slow, which other ``evcast`` commands should not pay.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecasting.cli.app import app
from forecasting.settings import Settings

if TYPE_CHECKING:
    from flows.steps import NightlyReport

flows_app = typer.Typer(
    help="Run the Prefect flows directly, or serve them as scheduled deployments.",
    no_args_is_help=True,
)
run_app = typer.Typer(help="Run one flow now, in this process, without a Prefect server.")
flows_app.add_typer(run_app, name="run")
app.add_typer(flows_app, name="flows")

_ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Pipeline config; default: <EVCAST_CONFIG_DIR>/pipeline.toml."),
]
_JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def prepare_prefect(settings: Settings) -> Path:
    """Default ``PREFECT_HOME`` to ``<EVCAST_HOME>/prefect`` (before Prefect is imported).

    A value the user set is kept. Also, unless set: Prefect's anonymous analytics off, a
    patient start-up of its temporary server (a busy machine can take more than the default
    20 s), and no MLflow download progress bars in the output.
    """
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)  # Prefect's SQLite database cannot create it
    return home


def _print_report(report: NightlyReport, *, as_json: bool) -> None:
    facts = {
        "issued_at": report.issued_at.isoformat(),
        "ingested": report.ingested.to_dict(),
        "sites": report.sites,
        "mlflow_tracking_uri": report.mlflow_uri,
        "forecast_store_url": report.store_url,
    }
    if as_json:
        typer.echo(json.dumps(facts, default=str))
        return
    typer.echo(f"issued at {facts['issued_at']}; ingest: {json.dumps(facts['ingested'])}")
    for site_id, site in report.sites.items():
        state = "published" if site.get("published") else "unchanged"
        typer.echo(f"  {site_id:36} {state:10} run {site['run_id']}  model {site['model']}")
    typer.echo(f"models (MLflow):  {report.mlflow_uri}")
    typer.echo("  list them:      evcast models")
    typer.echo(f"  browse them:    mlflow ui --backend-store-uri {report.mlflow_uri}")
    typer.echo(f"forecasts:        {report.store_url}")
    example = next(iter(report.sites), "<site_id>")
    typer.echo(f"  fetch one:      evcast fetch --site {example} --target net")
    typer.echo("  serve them:     evcast serve   (then GET /v1/sites/<site_id>/forecast)")


@run_app.command("nightly")
def run_nightly_command(
    night: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="Night processed; default today UTC."),
    ] = None,
    config: _ConfigOption = None,
    site: Annotated[list[str] | None, typer.Option(help="Site id; repeat. Default: all.")] = None,
    as_json: _JsonOption = False,
) -> None:
    """Ingest, train, evaluate, promote, forecast and publish one night."""
    prepare_prefect(Settings())
    from flows.nightly import run_nightly  # noqa: PLC0415 -- after PREFECT_HOME is set

    report = run_nightly(night.date() if night else None, config_file=config, sites=site)
    _print_report(report, as_json=as_json)


@run_app.command("intraday")
def run_intraday_command(
    issued_at: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
            help="Issue time, UTC (e.g. 2019-08-31T12:00); default now, floored.",
        ),
    ] = None,
    config: _ConfigOption = None,
    ingest: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Ingest first.")] = True,
    as_json: _JsonOption = False,
) -> None:
    """Forecast every site with its champion (or a marked baseline) and publish."""
    prepare_prefect(Settings())
    from flows.intraday import run_intraday  # noqa: PLC0415 -- after PREFECT_HOME is set

    when = issued_at.replace(tzinfo=UTC) if issued_at and issued_at.tzinfo is None else issued_at
    report = run_intraday(when, config_file=config, ingest=ingest)
    _print_report(report, as_json=as_json)


@run_app.command("backtest")
def run_backtest_command(
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First issue day.")],
    end: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Last issue day (incl.).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    site: Annotated[list[str] | None, typer.Option(help="Site id; repeat. Default: all.")] = None,
    config: _ConfigOption = None,
) -> None:
    """Run the backtest flow (same core as `evcast backtest`) and write the output folder."""
    prepare_prefect(Settings())
    from flows.backtest import backtest  # noqa: PLC0415 -- after PREFECT_HOME is set

    paths = backtest(start.date(), end.date(), out, sites=site, config_file=config)
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}")


@flows_app.command("serve")
def serve_command(config: _ConfigOption = None) -> None:
    """Serve the nightly and intraday deployments against PREFECT_API_URL until stopped."""
    prepare_prefect(Settings())
    from flows.deployments import serve_deployments  # noqa: PLC0415 -- after PREFECT_HOME

    serve_deployments(config_file=config)
