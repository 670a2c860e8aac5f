"""``evcast tokens create``: issue an API token scoped to sites (printed once, last line)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from forecasting.cli.app import app
from forecasting.errors import ConfigError
from forecasting.settings import Settings

tokens_app = typer.Typer(help="Create API tokens for load balancers.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

_DURATION = re.compile(r"^(\d{1,6})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_expiry(text: str, *, now: datetime) -> datetime:
    """Parse ``30d`` / ``12h`` / ``90m`` (from ``now``) or an ISO 8601 instant with offset."""
    match = _DURATION.match(text)
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        msg = f"--expires {text!r} is neither a duration like '30d' nor an ISO 8601 instant"
        raise ConfigError(msg)
    return parsed.astimezone(UTC)


@tokens_app.command("create")
def create(
    *,
    site: Annotated[list[str], typer.Option("--site", help="Site id it may read; repeat.")],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime ('30d', '12h') or ISO instant.")
    ] = None,
) -> None:
    """Create a token; it is shown once, alone on the last line. Only its hash is stored."""
    from forecasting.api.auth import issue_token  # noqa: PLC0415 -- lazy CLI imports
    from forecasting.io.forecast_store import open_store  # noqa: PLC0415
    from forecasting.publication.documents import format_time  # noqa: PLC0415

    now = datetime.now(UTC)
    expires_at = parse_expiry(expires, now=now) if expires else None
    engine = open_store(Settings().forecast_store_url)
    record, token = issue_token(engine, sites=site, now=now, expires_at=expires_at)
    typer.echo(f"token id: {record.token_id}")
    typer.echo(f"sites:    {', '.join(record.sites)}")
    typer.echo(f"expires:  {format_time(expires_at) if expires_at else 'never'}")
    typer.echo("store the token now; it cannot be shown again:")
    typer.echo(token)
