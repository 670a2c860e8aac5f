"""``evcast info``: where evcast keeps its state and finds its configuration."""

from __future__ import annotations

import json

import typer

from forecasting.cli.app import app
from forecasting.settings import Settings


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show EVCAST_HOME, the config folder, the MLflow URI and the forecast store URL."""
    settings = Settings()
    facts = {
        "home": str(settings.home.resolve()),
        "config_dir": str(settings.config_dir),
        "mlflow_tracking_uri": settings.tracking_uri,
        "forecast_store_url": settings.forecast_store_url,
    }
    if as_json:
        typer.echo(json.dumps(facts))
        return
    for key, value in facts.items():
        typer.echo(f"{key:22} {value}")
