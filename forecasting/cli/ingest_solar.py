"""``evcast ingest weather`` and ``evcast ingest pv``: weather and measured PV into the lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, cast

import typer

from forecasting.cli.app import ingest_app
from forecasting.config import SiteConfig, load_sites
from forecasting.errors import UnknownSiteError
from forecasting.io.lake import upsert_table
from forecasting.io.quarantine import write_quarantine
from forecasting.schemas import (
    PV_KEY,
    PV_SCHEMA,
    WEATHER_KEY,
    WEATHER_KINDS,
    WEATHER_SCHEMA,
    WeatherKind,
)
from forecasting.settings import Settings

if TYPE_CHECKING:
    from forecasting.ingest.pv import PvFormat
    from forecasting.ingest.weather import SolarRead, WeatherFormat

WEATHER_FORMATS: Final = ("psm3", "psm4", "tmy3", "surfrad", "csv")
"""``--format`` values of ``ingest weather``, as in :mod:`forecasting.ingest.weather`.

Spelled out here (a test keeps them equal) so that ``--help`` does not import pvlib.
"""
PV_FORMATS: Final = ("pvdaq", "csv")
"""``--format`` values of ``ingest pv``; equal to :data:`forecasting.ingest.pv.PV_FORMATS`."""


def _site(settings: Settings, site_id: str) -> SiteConfig:
    site = load_sites(settings.sites_file).get(site_id)
    if site is None:
        msg = (
            f"site {site_id!r} is not configured in {str(settings.sites_file)!r}; weather and PV "
            "checks need its location: add a [[sites]] block"
        )
        raise UnknownSiteError(msg)
    return site


def _store(settings: Settings, result: SolarRead, *, table: str) -> dict[str, int]:
    schema, key = (WEATHER_SCHEMA, WEATHER_KEY) if table == "weather" else (PV_SCHEMA, PV_KEY)
    upserted = {"inserted": 0, "updated": 0, "unchanged": 0}
    if result.accepted.height:
        outcome = upsert_table(settings.lake_dir, table, result.accepted, schema=schema, key=key)
        upserted = {
            "inserted": outcome.inserted,
            "updated": outcome.updated,
            "unchanged": outcome.unchanged,
        }
    if result.quarantined.height:
        write_quarantine(
            settings.quarantine_dir, result.quarantined, content_hash=result.content_hash
        )
    return upserted


def _echo(reports: list[dict[str, object]], *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(reports if len(reports) > 1 else reports[0]))
        return
    for report in reports:
        typer.echo(f"{report['files'][0]}")  # type: ignore[index]
        for key in ("rows_read", "accepted", "quarantined", "duplicates", "missing_intervals"):
            typer.echo(f"  {key:18} {report[key]}")
        typer.echo(f"  {'lake':18} {report['lake']}")
        typer.echo(f"  {'flags':18} {report['flags']}")
        typer.echo(f"  {'quarantine reasons':18} {report['by_reason']}")


@ingest_app.command("weather")
def ingest_weather(
    paths: Annotated[
        list[Path], typer.Argument(help="Weather files.", exists=True, dir_okay=False)
    ],
    *,
    site_id: Annotated[str, typer.Option("--site", help="Site id the weather belongs to.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(WEATHER_FORMATS)}.")],
    kind: Annotated[str, typer.Option("--kind", help="observation or forecast.")] = "observation",
    column_map: Annotated[
        Path | None, typer.Option("--column-map", help="Column map TOML (csv format).")
    ] = None,
    convert_kw: Annotated[
        bool, typer.Option("--convert-kw", help="Convert days whose GHI looks like kW/m^2.")
    ] = False,
    utc_offset_hours: Annotated[
        float | None,
        typer.Option(
            "--utc-offset-hours",
            help="UTC offset (hours) of NSRDB tables without metadata; default: the site's.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Validate weather files and upsert them into the lake's weather table."""
    if fmt not in WEATHER_FORMATS or kind not in WEATHER_KINDS:
        raise typer.BadParameter(
            f"--format must be one of {WEATHER_FORMATS}, --kind of "
            f"{WEATHER_KINDS}; got {fmt!r}, {kind!r}"
        )
    from forecasting.ingest.solar_sources import load_weather_column_map  # noqa: PLC0415 -- lazy
    from forecasting.ingest.weather import read_weather  # noqa: PLC0415

    settings = Settings()
    site = _site(settings, site_id)
    mapping = load_weather_column_map(column_map) if column_map else None
    now = datetime.now(UTC)
    reports = []
    for path in paths:
        result = read_weather(
            path,
            site=site,
            fmt=cast("WeatherFormat", fmt),
            kind=cast(WeatherKind, kind),
            column_map=mapping,
            convert_kw=convert_kw,
            utc_offset_hours=utc_offset_hours,
            ingested_at=now,
        )
        reports.append({**result.report(), "lake": _store(settings, result, table="weather")})
    _echo(reports, as_json=as_json)


@ingest_app.command("pv")
def ingest_pv(
    path: Annotated[Path, typer.Argument(help="Measured PV file.", exists=True, dir_okay=False)],
    *,
    site_id: Annotated[str, typer.Option("--site", help="Site id of the PV system.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(PV_FORMATS)}.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Validate a measured PV power file and upsert it into the lake's pv table [kW]."""
    if fmt not in PV_FORMATS:
        raise typer.BadParameter(f"--format must be one of {PV_FORMATS}; got {fmt!r}")
    from forecasting.ingest.pv import read_pv  # noqa: PLC0415 -- lazy CLI import

    settings = Settings()
    site = _site(settings, site_id)
    result = read_pv(path, site=site, fmt=cast("PvFormat", fmt), ingested_at=datetime.now(UTC))
    _echo([{**result.report(), "lake": _store(settings, result, table="pv")}], as_json=as_json)
