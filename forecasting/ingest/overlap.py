"""Overlapping sessions on one connector: the later one is quarantined.

A connector charges one car at a time, so a session that starts before the previous accepted
session on the same connector ended cannot both be right. Sessions already in the lake (from
earlier ingests) count as accepted; they are never quarantined, and a new row with the same
``session_id`` as a lake row is the same session (a re-ingest or a correction), not an overlap,
and counts as accepted too.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from forecasting.ingest.validate_sessions import OVERLAPPING_SESSION

CONNECTOR: Final = ("site_id", "station_id", "connector_id")
KNOWN_COLUMNS: Final = (*CONNECTOR, "session_id", "plug_in_at", "plug_out_at", "source")
"""Columns of lake sessions needed for the overlap check."""


def _describe(source: str, start: object, end: object) -> str:
    return f"session {source} ({start} to {end})"


def find_overlaps(candidates: pl.DataFrame, *, known: pl.DataFrame) -> pl.DataFrame:
    """Return ``row``, ``detail`` of candidate sessions that overlap an earlier accepted one.

    Parameters
    ----------
    candidates
        New sessions that passed every row rule, without exact duplicates: ``row``, ``source``,
        ``session_id``, ``site_id``, ``station_id``, ``connector_id``, ``plug_in_at``,
        ``plug_out_at``.
    known
        Sessions already accepted (in the lake), columns :data:`KNOWN_COLUMNS`.

    Returns
    -------
    pl.DataFrame
        One row per candidate to quarantine; ``detail`` names both sessions' sources.
    """
    rows = pl.concat(
        [
            candidates.select(*KNOWN_COLUMNS, "row", prior=pl.lit(value=False)),
            known.select(*KNOWN_COLUMNS, row=pl.lit(None, pl.Int64), prior=pl.lit(value=True)),
        ]
    ).sort([*CONNECTOR, "plug_in_at", "prior", "row"], descending=[False] * 4 + [True, False])
    cols = {c: rows[c].to_list() for c in (*CONNECTOR, "plug_in_at", "plug_out_at", "prior")}
    groups = list(zip(*(cols[c] for c in CONNECTOR), strict=True))
    starts, ends, prior = cols["plug_in_at"], cols["plug_out_at"], cols["prior"]
    found: list[tuple[int, int]] = []  # (index of the quarantined row, index of the open one)
    open_index = -1
    for i in range(rows.height):
        if i == 0 or groups[i] != groups[i - 1]:
            open_index = -1
        if open_index >= 0 and starts[i] < ends[open_index] and not prior[i]:
            found.append((i, open_index))
        elif open_index < 0 or ends[i] > ends[open_index]:
            open_index = i
    sources, row_numbers = rows["source"].to_list(), rows["row"].to_list()
    found_text = [
        (
            row_numbers[i],
            f"{_describe(sources[i], starts[i], ends[i])} overlaps "
            f"{_describe(sources[j], starts[j], ends[j])} on the same connector",
        )
        for i, j in found
    ]
    frame = pl.DataFrame(found_text, schema={"row": pl.Int64, "detail": pl.String}, orient="row")
    return frame.with_columns(reason=pl.lit(OVERLAPPING_SESSION))


def overlap_with_later_prior(candidates: pl.DataFrame, *, known: pl.DataFrame) -> pl.DataFrame:
    """Return ``row``, ``detail`` of candidates that run into a *later* lake session.

    :func:`find_overlaps` walks forward in time, so a new session that starts before a lake
    session and ends after that one started would be accepted and the lake row left to overlap
    it; the lake row wins, the new row is quarantined.
    """
    later = known.select(
        *CONNECTOR,
        pl.col("plug_in_at").alias("plug_in_at_known"),
        pl.col("plug_out_at").alias("plug_out_at_known"),
        pl.col("source").alias("source_known"),
    ).sort("plug_in_at_known")
    hits = (
        candidates.sort("plug_in_at")
        .join_asof(
            later,
            left_on="plug_in_at",
            right_on="plug_in_at_known",
            by=list(CONNECTOR),
            strategy="forward",
            check_sortedness=False,
        )
        .filter(pl.col("plug_out_at") > pl.col("plug_in_at_known"))
        .sort("row")
    )
    detail = pl.format(
        "session {} ({} to {}) overlaps session {} ({} to {}) on the same connector",
        "source",
        "plug_in_at",
        "plug_out_at",
        "source_known",
        "plug_in_at_known",
        "plug_out_at_known",
    )
    return hits.select("row", detail=detail, reason=pl.lit(OVERLAPPING_SESSION))


def find_all_overlaps(candidates: pl.DataFrame, *, known: pl.DataFrame) -> pl.DataFrame:
    """Return ``row``, ``detail``, ``reason`` of candidates overlapping an accepted session.

    Candidates whose ``session_id`` is already stored are re-ingests: they join the accepted
    sessions (with their new values) instead of being checked.
    """
    key = ["site_id", "session_id"]
    if candidates.height == 0:
        return pl.DataFrame(schema={"row": pl.Int64, "detail": pl.String, "reason": pl.String})
    window = (pl.col("plug_out_at") > candidates["plug_in_at"].min()) & (
        pl.col("plug_in_at") < candidates["plug_out_at"].max()
    )
    known = known.filter(window)
    stored_again = candidates.join(known.select(key), on=key, how="semi")
    accepted = pl.concat(
        [
            known.join(candidates.select(key), on=key, how="anti"),
            stored_again.select(KNOWN_COLUMNS),
        ]
    )
    new = candidates.join(known.select(key), on=key, how="anti")
    return pl.concat(
        [find_overlaps(new, known=accepted), overlap_with_later_prior(new, known=accepted)]
    ).unique("row", keep="first", maintain_order=True)
