"""``evcast serve``: run the HTTP API with uvicorn (optionally over TLS)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecasting.cli.app import app
from forecasting.errors import ConfigError
from forecasting.settings import Settings

if TYPE_CHECKING:
    import uvicorn


def build_server_config(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> uvicorn.Config:
    """Return the uvicorn configuration of the API over the store and site catalog."""
    if (tls_cert is None) != (tls_key is None):
        msg = "TLS needs both --tls-cert and --tls-key (PEM files); pass both or neither"
        raise ConfigError(msg)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            msg = f"TLS file {str(path)!r} does not exist; check the path"
            raise ConfigError(msg)
    import uvicorn  # noqa: PLC0415 -- lazy CLI imports: `evcast --help` stays fast

    from forecasting.api import create_app  # noqa: PLC0415
    from forecasting.io.catalog import load_site_catalog  # noqa: PLC0415
    from forecasting.io.forecast_store import open_store  # noqa: PLC0415

    api = create_app(settings, open_store(settings.forecast_store_url), load_site_catalog(settings))
    return uvicorn.Config(
        api,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        access_log=False,
        log_level="warning",
    )


@app.command("serve")
def serve(
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM key of the certificate.")] = None,
) -> None:
    """Serve forecasts, schedules and site lists over HTTP(S) until interrupted."""
    settings = Settings()
    if settings.signing_key is None:
        typer.echo("warning: EVCAST_SIGNING_KEY is not set; responses are not signed", err=True)
    config = build_server_config(settings, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    import uvicorn  # noqa: PLC0415 -- lazy CLI import

    uvicorn.Server(config).run()
