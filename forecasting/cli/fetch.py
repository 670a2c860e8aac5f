"""``evcast fetch``: the latest published forecast of a site, from the store or a server.

Without ``--url`` the run is read from the forecast store directly; with ``--url`` (and a token,
``--token`` or ``EVCAST_TOKEN``) it is fetched from ``evcast serve``. Either way the JSON form is
the API's response body, byte for byte the same document (run id included); the CSV form is
its intervals, each row tagged with site, run, target, stale and fallback flags.
"""

from __future__ import annotations

import json
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from forecasting.cli.app import app
from forecasting.config import SITE_ID_PATTERN
from forecasting.errors import ConfigError, StoreError
from forecasting.settings import Settings

_TIMEOUT_S = 10.0


def _parse(value: str | None, *, name: str) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        msg = f"--{name} {value!r} needs a UTC offset, e.g. 2024-06-01T00:00Z"
        raise ConfigError(msg)
    return parsed.astimezone(UTC)


def read_local_document(
    settings: Settings, *, site_id: str, target: str, start: str | None, end: str | None
) -> bytes:
    """Build the document of the site's latest run from the store, as the API would."""
    from forecasting.api.config import ApiConfig  # noqa: PLC0415 -- lazy CLI imports
    from forecasting.io.forecast_store import open_store, read_latest_run  # noqa: PLC0415
    from forecasting.publication.baseline import resolve_served  # noqa: PLC0415
    from forecasting.publication.documents import (  # noqa: PLC0415
        build_forecast_document,
        encode_document,
    )

    stored = read_latest_run(open_store(settings.forecast_store_url), site_id)
    if stored is None:
        msg = f"no forecast has been published for site {site_id!r}; run the pipeline first"
        raise StoreError(msg)
    served, stale, reason = resolve_served(
        stored.publication, now=datetime.now(UTC), stale_policy=ApiConfig().stale_policy
    )
    if target not in served.targets:
        msg = f"target {target!r} is not published for site {site_id!r}"
        raise StoreError(msg)
    document = build_forecast_document(
        served,
        target=target,
        start=_parse(start, name="from"),
        end=_parse(end, name="to"),
        stale=stale,
        fallback_reason=reason,
    )
    return encode_document(document)


def read_remote_document(
    settings: Settings,
    *,
    url: str,
    token: str,
    site_id: str,
    params: dict[str, str],
    ca_cert: Path | None = None,
) -> bytes:
    """GET the document from a server; verify its signature when a signing key is set."""
    import httpx  # noqa: PLC0415 -- lazy CLI imports: `evcast --help` stays fast

    from forecasting.api.signing import SIGNATURE_HEADER, verify_signature  # noqa: PLC0415

    endpoint = f"{url.rstrip('/')}/v1/sites/{site_id}/forecast"
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
    )
    try:
        response = httpx.get(
            endpoint,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=_TIMEOUT_S,
            verify=verify,
        )
    except httpx.HTTPError as exc:
        msg = f"cannot reach {endpoint!r}: {exc}; check --url and that `evcast serve` runs"
        raise StoreError(msg) from exc
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.content else ""
        msg = f"server answered {response.status_code} for {endpoint!r}: {detail}"
        raise StoreError(msg)
    if settings.signing_key is not None:
        key = settings.signing_key.get_secret_value().encode()
        if not verify_signature(response.content, response.headers.get(SIGNATURE_HEADER), key=key):
            msg = f"response of {endpoint!r} has a missing or wrong signature; do not trust it"
            raise StoreError(msg)
    return response.content


@app.command("fetch")
def fetch(
    *,
    site: Annotated[str, typer.Option(help="Site id.")],
    target: Annotated[str, typer.Option(help="demand, pv, net or headroom.")] = "net",
    output_format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    start: Annotated[str | None, typer.Option("--from", help="ISO 8601 instant, incl.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="ISO 8601 instant, excl.")] = None,
    url: Annotated[str | None, typer.Option(help="Server URL; default: the store.")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="EVCAST_TOKEN", help="Bearer token for --url.")
    ] = None,
    ca_cert: Annotated[Path | None, typer.Option(help="CA bundle for an HTTPS --url.")] = None,
) -> None:
    """Print the latest published forecast of a site (JSON: the API body; or CSV)."""
    fmt: Literal["json", "csv"] | None = (
        output_format if output_format in ("json", "csv") else None  # type: ignore[assignment]
    )
    if fmt is None or target not in ("demand", "pv", "net", "headroom"):
        msg = (
            "use --format json|csv and --target demand|pv|net|headroom, "
            f"got {output_format!r} and {target!r}"
        )
        raise ConfigError(msg)
    if not re.fullmatch(SITE_ID_PATTERN, site):
        msg = f"--site {site!r} is not a valid site id (lowercase letters, digits, dashes)"
        raise ConfigError(msg)
    settings = Settings()
    if url is None:
        body = read_local_document(settings, site_id=site, target=target, start=start, end=end)
    elif not token:
        msg = "--url needs a token: pass --token or set EVCAST_TOKEN"
        raise ConfigError(msg)
    else:
        params = {
            "target": target,
            **({"from": start} if start else {}),
            **({"to": end} if end else {}),
        }
        body = read_remote_document(
            settings, url=url, token=token, site_id=site, params=params, ca_cert=ca_cert
        )
    if fmt == "json":
        typer.echo(body.decode())
        return
    from forecasting.publication.documents import build_document_csv  # noqa: PLC0415 -- lazy

    document: dict[str, Any] = json.loads(body)
    typer.echo(build_document_csv(document), nl=False)
