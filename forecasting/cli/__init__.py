"""Entry point of the ``evcast`` command (also ``python -m forecasting``).

Each module listed in ``_COMMAND_MODULES`` defines its commands on :data:`forecasting.cli.app.app`;
importing it registers them. Commands call the same core functions as the Prefect flows.

Command modules import only light modules at their top; heavy libraries (MLflow, Prefect,
LightGBM, pvlib, FastAPI, uvicorn, httpx) are imported inside the commands that need them, so
``evcast --help`` and ``evcast info`` start fast (``tests/forecasting/cli/test_main.py`` checks).
"""

from __future__ import annotations

import importlib
import sys

from forecasting.cli.app import app
from forecasting.errors import ForecastingError

_COMMAND_MODULES: tuple[str, ...] = (
    "forecasting.cli.backtest",
    "forecasting.cli.info",
    "forecasting.cli.ingest_sessions",
    "forecasting.cli.ingest_solar",
    "forecasting.cli.sites",
    "forecasting.cli.serve",
    "forecasting.cli.tokens",
    "forecasting.cli.fetch",
    "forecasting.cli.flows",
    "forecasting.cli.train",
)

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)


def main() -> None:
    """Run the CLI; a :class:`ForecastingError` prints its message and exits with status 2."""
    try:
        app()
    except ForecastingError as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from exc


def describe_error(exc: ForecastingError) -> str:
    """Return the message of ``exc`` as written.

    ``str()`` of an error that is also a :class:`KeyError` (such as ``UnknownSiteError``) wraps
    the message in quotes, so the first argument is used when it is a string.
    """
    message = exc.args[0] if exc.args else None
    return message if isinstance(message, str) else str(exc)


__all__ = ["app", "describe_error", "main"]
