"""``evcast serve``: run the HTTP API with uvicorn (optionally over TLS, in several processes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from forecasting.cli.app import app
from forecasting.errors import ConfigError
from forecasting.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

APP_FACTORY: Final = "forecasting.api.main:create_app_from_env"
GRACEFUL_SHUTDOWN_S: Final = 10  # most a stalled connection delays a worker's shutdown [s]

WORKERS_HELP = (
    "Worker processes sharing the port. Each worker keeps its own caches and its own rate "
    "limiter: the per-token limit (EVCAST_API_RATE_PER_S, EVCAST_API_BURST) applies per worker, "
    "so a token spreading its requests over several connections may get up to N times it."
)


def _check_tls(tls_cert: Path | None, tls_key: Path | None) -> None:
    if (tls_cert is None) != (tls_key is None):
        msg = "TLS needs both --tls-cert and --tls-key (PEM files); pass both or neither"
        raise ConfigError(msg)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            msg = f"TLS file {str(path)!r} does not exist; check the path"
            raise ConfigError(msg)


def build_server_config(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    workers: int = 1,
) -> uvicorn.Config:
    """Return the uvicorn configuration of the API over the store and site catalog.

    With one worker the app is built here from ``settings``; with several, uvicorn starts each
    worker process fresh and it builds its own app from the ``EVCAST_*`` environment
    (:func:`forecasting.api.main.create_app_from_env`), so the store and the site catalog are
    checked here first: a bad configuration fails once, here, rather than in every worker. The
    event loop and HTTP parser are uvicorn's "auto" choice: uvloop and httptools when installed
    (``uvicorn[standard]``).

    Parameters
    ----------
    settings
        Runtime settings: forecast store URL, sites file, signing key.
    host
        Interface to listen on.
    port
        TCP port [-], 1 to 65535.
    tls_cert, tls_key
        PEM certificate and key, both or neither: HTTPS.
    workers
        Worker processes sharing the port [-], at least 1.

    Raises
    ------
    ConfigError
        For a bad TLS pair, worker count or site catalog.
    StoreError
        When the forecast store cannot be opened.
    """
    _check_tls(tls_cert, tls_key)
    if workers < 1:
        msg = f"--workers must be at least 1, got {workers!r}"
        raise ConfigError(msg)
    import uvicorn  # noqa: PLC0415 -- lazy CLI imports: `evcast --help` stays fast

    from forecasting.api.main import build_app, check_settings  # noqa: PLC0415

    api: str | FastAPI = APP_FACTORY  # each worker process builds its own
    if workers == 1:
        api = build_app(settings)
    else:
        check_settings(settings)
    return uvicorn.Config(
        api,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def run_server(config: uvicorn.Config) -> None:
    """Run uvicorn until interrupted: in this process, or as a supervisor of worker processes."""
    import uvicorn  # noqa: PLC0415 -- lazy CLI import
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    from forecasting.api.main import freeze_heap  # noqa: PLC0415

    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        freeze_heap()
        uvicorn.Server(config).run()


@app.command("serve")
def serve(
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of the certificate.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help=WORKERS_HELP)] = 1,
) -> None:
    """Serve forecasts, schedules and site lists over HTTP(S) until interrupted."""
    settings = Settings()
    if settings.signing_key is None:
        typer.echo("warning: EVCAST_SIGNING_KEY is not set; responses are not signed", err=True)
    config = build_server_config(
        settings, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, workers=workers
    )
    run_server(config)
