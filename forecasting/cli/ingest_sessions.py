"""``evcast ingest sessions``: validate session files and store them in the lake.

Each file is read, validated against the lake's sessions and stored on its own; a file that is
rejected whole (not UTF-8, truncated, wrong layout) is reported and the others go on. The
balance printed (accepted + quarantined + duplicates = read) covers the files that were read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from forecasting.cli.app import ingest_app
from forecasting.config import load_sites
from forecasting.errors import InputFileError
from forecasting.ingest.sessions import SESSION_FORMATS
from forecasting.ingest.summary import IngestSummary
from forecasting.io.catalog import ingest_session_file
from forecasting.settings import Settings

_FORMAT_HELP: Final = f"Source format: {' | '.join(SESSION_FORMATS)}."


def _print_summary(
    summary: IngestSummary, rejected: list[dict[str, str]], new_sites: list[str]
) -> None:
    console = Console()
    console.print(
        f"[bold]{summary.accepted}[/] accepted + [bold]{summary.quarantined}[/] quarantined + "
        f"[bold]{summary.duplicates}[/] duplicates = [bold]{summary.rows_read}[/] rows read "
        f"from {len(summary.files)} file(s)"
    )
    if summary.by_reason:
        table = Table("reason", "rows", title="quarantined by reason")
        for reason, count in sorted(summary.by_reason.items()):
            table.add_row(reason, str(count))
        console.print(table)
    if new_sites:
        console.print(f"discovered sites (not in sites.toml): {', '.join(new_sites)}")
    for item in rejected:
        console.print(f"[red]rejected[/] {item['file']}: {item['error']}", highlight=False)


@ingest_app.command("sessions")
def ingest_sessions(
    paths: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Session files.")
    ],
    fmt: Annotated[str, typer.Option("--format", help=_FORMAT_HELP)],
    column_map: Annotated[
        Path | None,
        typer.Option("--column-map", exists=True, dir_okay=False, help="Column map TOML."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Validate charging-session files, store accepted rows, quarantine the rest."""
    if fmt not in SESSION_FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(SESSION_FORMATS)}", param_hint="--format")
    settings = Settings()
    sites = load_sites(settings.sites_file)
    ingested_at = datetime.now(UTC)
    summary = IngestSummary()
    rejected: list[dict[str, str]] = []
    new_sites: list[str] = []
    for path in paths:
        try:
            read, stored = ingest_session_file(
                path,
                fmt=fmt,
                settings=settings,
                sites=sites,
                ingested_at=ingested_at,
                column_map=column_map,
            )
        except InputFileError as exc:
            rejected.append({"file": path.name, "error": str(exc)})
            continue
        summary.add(read.summary)
        new_sites.extend(stored.new_sites)
    summary.check_balance()
    if as_json:
        typer.echo(json.dumps({**summary.to_dict(), "rejected_files": rejected}))
    else:
        _print_summary(summary, rejected, new_sites)
    if rejected:
        raise typer.Exit(code=1)
