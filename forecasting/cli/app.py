"""The ``evcast`` command-line application object; commands register themselves on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="evcast",
    help="Forecast EV charging demand, on-site solar and grid headroom for charging sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Forecast EV charging demand, on-site solar and grid headroom for charging sites."""


ingest_app = typer.Typer(
    help="Read session, weather and PV files, validate them, and store them in the lake.",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")
