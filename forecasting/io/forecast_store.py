"""The forecast store: published runs, API tokens and the fetch audit log (SQLAlchemy Core).

Embedded SQLite under ``EVCAST_HOME`` by default (``Settings.forecast_store_url``), or any
SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``. Tables:

``runs``
    One row per published run: ``run_id`` (content hash of the inputs), ``site_id``,
    ``issued_at``, ``data_cutoff``, ``expires_at``, ``created_at``, ``resolution_s`` [s], the
    site's ``grid_limit_kw`` and ``other_load_kw`` [kW] the headroom was computed with, and
    ``targets`` (JSON: per served target its contributing models and fallback reason).
``intervals``
    ``run_id``, ``target``, ``interval_start``, ``p10``/``p50``/``p90`` energy per interval [kWh].
``tokens``
    ``token_id`` (public), ``secret_sha256`` (never the secret), ``sites`` (JSON list),
    ``created_at``, ``expires_at``.
``audit``
    Append-only: ``at``, ``token_id``, ``site_id``, ``path``, ``status``, ``run_id``.

A run and its intervals are written in one transaction, so readers see the old run or the new
one, never a mix; the latest run of a site is the one with the greatest ``(issued_at,
created_at)``. Every timestamp is stored and returned as tz-aware UTC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from forecasting.errors import StoreError
from forecasting.publication.contract import ModelIdentity, Publication, TargetMeta
from forecasting.schemas import UTC_DATETIME

_META = sa.MetaData()
_TS = sa.DateTime(timezone=True)

RUNS = sa.Table(
    "runs",
    _META,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("issued_at", _TS, nullable=False),
    sa.Column("data_cutoff", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("resolution_s", sa.Integer, nullable=False),
    sa.Column("grid_limit_kw", sa.Float, nullable=True),
    sa.Column("other_load_kw", sa.Float, nullable=False),
    sa.Column("targets", sa.Text, nullable=False),
    sa.Index("ix_runs_site_issued", "site_id", "issued_at", "created_at"),
)
INTERVALS = sa.Table(
    "intervals",
    _META,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("target", sa.String(16), primary_key=True),
    sa.Column("interval_start", _TS, primary_key=True),
    sa.Column("p10", sa.Float, nullable=False),
    sa.Column("p50", sa.Float, nullable=False),
    sa.Column("p90", sa.Float, nullable=False),
)
TOKENS = sa.Table(
    "tokens",
    _META,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("sites", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("expires_at", _TS, nullable=True),
)
AUDIT = sa.Table(
    "audit",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("token_id", sa.String(32), nullable=True),
    sa.Column("site_id", sa.String(64), nullable=True),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
)


@dataclass(frozen=True)
class StoredRun:
    """A published run as read back: its metadata and the intervals of every served target."""

    publication: Publication
    created_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    """A stored API token: public id, SHA-256 of the secret, scope and expiry."""

    token_id: str
    secret_sha256: str
    sites: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    """One fetch: who (token id, never the token), which site and path, the outcome."""

    at: datetime
    token_id: str | None
    site_id: str | None
    path: str
    status: int
    run_id: str | None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_store(url: str) -> Engine:
    """Open (and create if needed) the forecast store at a SQLAlchemy URL."""
    parsed = sa.make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    args = {"check_same_thread": False} if is_sqlite else {}
    engine = sa.create_engine(parsed, connect_args=args, pool_pre_ping=not is_sqlite)
    if is_sqlite:
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _META.create_all(engine)
    except SQLAlchemyError as exc:
        msg = f"cannot open forecast store {parsed.render_as_string()!r}: {exc}"
        raise StoreError(msg) from exc
    return engine


def _targets_json(targets: Mapping[str, TargetMeta]) -> str:
    return json.dumps(
        {
            name: {
                "models": {k: m.as_dict() for k, m in meta.models.items()},
                "fallback_reason": meta.fallback_reason,
            }
            for name, meta in sorted(targets.items())
        },
        sort_keys=True,
    )


def _targets_from_json(text: str) -> dict[str, TargetMeta]:
    return {
        name: TargetMeta(
            {k: ModelIdentity(**m) for k, m in entry["models"].items()},
            entry["fallback_reason"],
        )
        for name, entry in json.loads(text).items()
    }


def publish_run(engine: Engine, publication: Publication, *, created_at: datetime) -> bool:
    """Store a run and its intervals in one transaction; return False if it already existed.

    Idempotent: the run id is a content hash of the inputs, so publishing the same inputs again
    stores nothing. A failure anywhere rolls the whole run back; readers keep seeing the
    previous run.
    """
    row = {
        "run_id": publication.run_id,
        "site_id": publication.site_id,
        "issued_at": publication.issued_at,
        "data_cutoff": publication.data_cutoff,
        "expires_at": publication.expires_at,
        "created_at": created_at,
        "resolution_s": publication.resolution_s,
        "grid_limit_kw": publication.grid_limit_kw,
        "other_load_kw": publication.other_load_kw,
        "targets": _targets_json(publication.targets),
    }
    intervals = [{"run_id": publication.run_id, **r} for r in publication.intervals.to_dicts()]
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                sa.select(RUNS.c.run_id).where(RUNS.c.run_id == publication.run_id)
            ).first()
            if exists:
                return False
            conn.execute(RUNS.insert(), [row])
            conn.execute(INTERVALS.insert(), intervals)
    except IntegrityError:
        if read_run(engine, publication.run_id) is not None:
            return False
        raise
    return True


def _latest_query(site_id: str) -> sa.Select[Any]:
    return (
        sa.select(RUNS)
        .where(RUNS.c.site_id == site_id)
        .order_by(RUNS.c.issued_at.desc(), RUNS.c.created_at.desc())
        .limit(1)
    )


def latest_run_id(engine: Engine, site_id: str) -> str | None:
    """Return the id of a site's latest run, or None when nothing is published."""
    with engine.connect() as conn:
        row = conn.execute(_latest_query(site_id).with_only_columns(RUNS.c.run_id)).first()
    return None if row is None else str(row.run_id)


def _read_intervals(conn: sa.Connection, run_id: str) -> pl.DataFrame:
    rows = conn.execute(
        sa.select(
            INTERVALS.c.target,
            INTERVALS.c.interval_start,
            INTERVALS.c.p10,
            INTERVALS.c.p50,
            INTERVALS.c.p90,
        )
        .where(INTERVALS.c.run_id == run_id)
        .order_by(INTERVALS.c.target, INTERVALS.c.interval_start)
    ).all()
    return pl.DataFrame(
        {
            "target": [r.target for r in rows],
            "interval_start": [_utc(r.interval_start) for r in rows],
            "p10": [r.p10 for r in rows],
            "p50": [r.p50 for r in rows],
            "p90": [r.p90 for r in rows],
        },
        schema={
            "target": pl.String(),
            "interval_start": UTC_DATETIME,
            "p10": pl.Float64(),
            "p50": pl.Float64(),
            "p90": pl.Float64(),
        },
    )


def _to_stored(conn: sa.Connection, row: sa.Row[Any]) -> StoredRun:
    publication = Publication(
        run_id=row.run_id,
        site_id=row.site_id,
        issued_at=_utc(row.issued_at),
        data_cutoff=_utc(row.data_cutoff),
        expires_at=_utc(row.expires_at),
        resolution_s=row.resolution_s,
        grid_limit_kw=row.grid_limit_kw,
        other_load_kw=row.other_load_kw,
        targets=_targets_from_json(row.targets),
        intervals=_read_intervals(conn, row.run_id),
        created_at=_utc(row.created_at),
    )
    return StoredRun(publication=publication, created_at=_utc(row.created_at))


def read_run(engine: Engine, run_id: str) -> StoredRun | None:
    """Return a stored run by id, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(RUNS).where(RUNS.c.run_id == run_id)).first()
        return None if row is None else _to_stored(conn, row)


def read_latest_run(engine: Engine, site_id: str) -> StoredRun | None:
    """Return a site's latest run (greatest issued_at, then created_at), or None."""
    with engine.connect() as conn:
        row = conn.execute(_latest_query(site_id)).first()
        return None if row is None else _to_stored(conn, row)


def apply_retention(
    engine: Engine,
    *,
    now: datetime,
    keep_runs: int | None = None,
    keep_days: float | None = None,
) -> list[str]:
    """Delete old runs per site; return the deleted run ids.

    A run is kept when it is among the ``keep_runs`` latest of its site, or was issued less
    than ``keep_days`` [d] before ``now``; the latest run of a site is never deleted.
    """
    cutoff = now - timedelta(days=keep_days) if keep_days is not None else None
    doomed: list[str] = []
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(RUNS.c.run_id, RUNS.c.site_id, RUNS.c.issued_at).order_by(
                RUNS.c.site_id, RUNS.c.issued_at.desc(), RUNS.c.created_at.desc()
            )
        ).all()
        rank: dict[str, int] = {}
        for row in rows:
            position = rank.get(row.site_id, 0)
            rank[row.site_id] = position + 1
            kept_by_count = keep_runs is not None and position < keep_runs
            kept_by_age = cutoff is not None and _utc(row.issued_at) >= cutoff
            if position > 0 and not kept_by_count and not kept_by_age:
                doomed.append(row.run_id)
        if doomed:
            conn.execute(INTERVALS.delete().where(INTERVALS.c.run_id.in_(doomed)))
            conn.execute(RUNS.delete().where(RUNS.c.run_id.in_(doomed)))
    return doomed


def list_published_sites(engine: Engine) -> list[str]:
    """Site ids that have at least one published run."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RUNS.c.site_id).distinct().order_by(RUNS.c.site_id))
        return [r.site_id for r in rows]


def write_token(engine: Engine, token: TokenRecord) -> None:
    """Store a token record (the secret's hash only)."""
    with engine.begin() as conn:
        conn.execute(
            TOKENS.insert(),
            [
                {
                    "token_id": token.token_id,
                    "secret_sha256": token.secret_sha256,
                    "sites": json.dumps(list(token.sites)),
                    "created_at": token.created_at,
                    "expires_at": token.expires_at,
                }
            ],
        )


def read_token(engine: Engine, token_id: str) -> TokenRecord | None:
    """Return a token record by its public id, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(TOKENS).where(TOKENS.c.token_id == token_id)).first()
    if row is None:
        return None
    return TokenRecord(
        token_id=row.token_id,
        secret_sha256=row.secret_sha256,
        sites=tuple(json.loads(row.sites)),
        created_at=_utc(row.created_at),
        expires_at=_utc(row.expires_at) if row.expires_at else None,
    )


def write_audit(engine: Engine, records: Sequence[AuditRecord]) -> None:
    """Append audit records (there is deliberately no update or delete)."""
    if not records:
        return
    with engine.begin() as conn:
        conn.execute(AUDIT.insert(), [r.__dict__ for r in records])


def read_audit(engine: Engine) -> pl.DataFrame:
    """Return the audit log, oldest first: at, token_id, site_id, path, status, run_id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(AUDIT).order_by(AUDIT.c.id)).all()
    return pl.DataFrame(
        [
            {
                "at": _utc(r.at),
                "token_id": r.token_id,
                "site_id": r.site_id,
                "path": r.path,
                "status": r.status,
                "run_id": r.run_id,
            }
            for r in rows
        ],
        schema={
            "at": UTC_DATETIME,
            "token_id": pl.String(),
            "site_id": pl.String(),
            "path": pl.String(),
            "status": pl.Int64(),
            "run_id": pl.String(),
        },
        orient="row",
    )
