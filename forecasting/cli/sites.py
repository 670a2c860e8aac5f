"""``evcast sites``: configured and discovered sites with their session statistics."""

from __future__ import annotations

import json
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Column, Table

from forecasting.cli.app import app
from forecasting.io.catalog import compute_site_stats
from forecasting.settings import Settings


def _iso(column: str) -> pl.Expr:
    return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("sites")
def sites(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List sites (sites.toml plus discovered) with sessions, first/last and share quarantined."""
    stats = compute_site_stats(Settings()).with_columns(
        _iso("first_session"), _iso("last_session"), pl.col("share_quarantined").round(4)
    )
    if as_json:
        typer.echo(json.dumps(stats.to_dicts()))
        return
    widest = max((len(s) for s in stats["site_id"]), default=7)
    table = Table("timezone", "sessions", "first", "last", "quarantined")
    table.columns.insert(0, Column("site_id", no_wrap=True, min_width=widest))
    for row in stats.iter_rows(named=True):
        share = row["share_quarantined"]
        table.add_row(
            row["site_id"],
            row["timezone"],
            str(row["sessions"]),
            row["first_session"] or "-",
            row["last_session"] or "-",
            "-" if share is None else f"{share:.1%}",
        )
    Console().print(table)
