"""Naive site-local times to UTC, with a fixed rule at daylight-saving changes.

Rule (never a crash, always flagged in the session's ``attributes.flags``):

- **Nonexistent** local times (clocks jump forward, e.g. 2018-03-25 01:30 Europe/London) are read
  with the UTC offset in force just before the jump, i.e. as a clock that was not yet moved:
  01:30 GMT = 02:30 BST. Flag ``<field>:dst_nonexistent_shifted``.
- **Ambiguous** local times (clocks fall back, e.g. 2018-10-28 01:30 Europe/London happens twice)
  take the earlier instant (01:30 BST), flag ``<field>:dst_ambiguous_earliest``; except an
  ambiguous *unplug* time that would then precede its plug-in, which takes the later instant
  (01:30 GMT), flag ``plug_out_at:dst_ambiguous_latest``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final, Literal

import polars as pl

from forecasting.schemas import UTC_DATETIME

_LOOKBACK: Final = timedelta(hours=6)


def compute_utc_from_local(
    naive: pl.Expr, *, tz: str, ambiguous: Literal["earliest", "latest"] = "earliest"
) -> pl.Expr:
    """Return the UTC instant of naive local datetimes in zone ``tz`` (see the module rule)."""
    localized = naive.dt.replace_time_zone(tz, ambiguous=ambiguous, non_existent="null")
    before = (naive - _LOOKBACK).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    offset = before.dt.base_utc_offset() + before.dt.dst_offset()
    shifted = (naive - offset).dt.replace_time_zone("UTC")
    return (
        pl.when(localized.is_null() & naive.is_not_null())
        .then(shifted)
        .otherwise(localized.dt.convert_time_zone("UTC"))
        .cast(UTC_DATETIME)
    )


def _is_nonexistent(naive: pl.Expr, *, tz: str) -> pl.Expr:
    localized = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    return naive.is_not_null() & localized.is_null()


def _is_ambiguous(naive: pl.Expr, *, tz: str) -> pl.Expr:
    early = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    late = naive.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
    return (early != late).fill_null(value=False)


def _flag(condition: pl.Expr, name: str) -> pl.Expr:
    return pl.when(condition).then(pl.lit([name], dtype=pl.List(pl.String))).otherwise(pl.lit([]))


def add_utc_session_times(frame: pl.DataFrame, *, tz: str) -> pl.DataFrame:
    """Add UTC ``plug_in_at``, ``plug_out_at``, ``charging_done_at`` from naive local times.

    Parameters
    ----------
    frame
        Needs naive ``Datetime`` columns ``plug_in_local``, ``plug_out_local`` and
        ``charging_done_local`` (nulls allowed) and a ``flags`` list column.
    tz
        IANA zone of the naive times.

    Returns
    -------
    pl.DataFrame
        ``frame`` plus the three UTC columns; ``flags`` extended by the DST rule applied.
    """
    plug_in, plug_out, done = (
        pl.col(c) for c in ("plug_in_local", "plug_out_local", "charging_done_local")
    )
    frame = frame.with_columns(
        plug_in_at=compute_utc_from_local(plug_in, tz=tz),
        plug_out_at=compute_utc_from_local(plug_out, tz=tz),
        _out_late=compute_utc_from_local(plug_out, tz=tz, ambiguous="latest"),
        charging_done_at=compute_utc_from_local(done, tz=tz),
    )
    out_late = _is_ambiguous(plug_out, tz=tz) & (pl.col("plug_out_at") < pl.col("plug_in_at"))
    flags = [
        _flag(_is_nonexistent(plug_in, tz=tz), "plug_in_at:dst_nonexistent_shifted"),
        _flag(_is_ambiguous(plug_in, tz=tz), "plug_in_at:dst_ambiguous_earliest"),
        _flag(_is_nonexistent(plug_out, tz=tz), "plug_out_at:dst_nonexistent_shifted"),
        _flag(_is_ambiguous(plug_out, tz=tz) & ~out_late, "plug_out_at:dst_ambiguous_earliest"),
        _flag(out_late, "plug_out_at:dst_ambiguous_latest"),
    ]
    return frame.with_columns(
        plug_out_at=pl.when(out_late).then(pl.col("_out_late")).otherwise(pl.col("plug_out_at")),
        flags=pl.concat_list([pl.col("flags"), *flags]),
    ).drop("_out_late")
