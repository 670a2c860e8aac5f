from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal
from sqlalchemy.engine import Engine

from forecasting.config import SiteConfig
from forecasting.io import forecast_store as fs
from forecasting.publication.examples import build_example_run
from forecasting.publication.targets import build_publication

PG_BIN = Path("/usr/lib/postgresql/15/bin")
T0 = datetime(2024, 6, 1, tzinfo=UTC)
SITE = SiteConfig(
    site_id="site-a", name="A", latitude=56.0, longitude=-3.0, timezone="UTC", grid_limit_kw=100
)


def _publication(*, issued_at: datetime = T0, scale: float = 1.0, site: SiteConfig = SITE):
    run = build_example_run(site.site_id, issued_at=issued_at, hours=6, scale=scale)
    return build_publication(run, site=site)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port; skipped when none can start."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb refuses to run as root")
    folder = Path(tempfile.mkdtemp(prefix="evcast-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
    port = _free_port()
    init = subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[:300]}")
    options = f"-p {port} -h 127.0.0.1 -k {folder} -F"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "30"]
    started = subprocess.run(
        _as_postgres([*ctl, "-l", str(folder / "log"), "start"]), capture_output=True, check=False
    )
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {started.stderr.decode()[:300]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'forecasts.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean schema per test
        conn.execute(sa.text("DROP TABLE IF EXISTS intervals, runs, tokens, audit CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = fs.open_store(store_url)
    yield engine
    engine.dispose()


def test_publish_reads_back_exactly_and_is_idempotent(store: Engine) -> None:
    publication = _publication()
    assert fs.publish_run(store, publication, created_at=T0) is True
    assert fs.publish_run(store, publication, created_at=T0 + timedelta(hours=1)) is False
    stored = fs.read_latest_run(store, "site-a")
    assert stored is not None
    assert stored.publication.run_id == publication.run_id
    assert stored.created_at == T0  # the second publish changed nothing
    assert stored.publication.targets == publication.targets
    assert stored.publication.grid_limit_kw == 100.0
    assert_frame_equal(
        stored.publication.intervals, publication.intervals.sort("target", "interval_start")
    )
    with store.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(fs.INTERVALS)).scalar_one()
    assert count == publication.intervals.height


def test_same_inputs_give_same_run_id_and_different_inputs_another() -> None:
    assert _publication().run_id == _publication().run_id
    assert _publication(scale=1.1).run_id != _publication().run_id
    other_limit = SITE.model_copy(update={"grid_limit_kw": 90.0})
    assert _publication(site=other_limit).run_id != _publication().run_id


def test_latest_run_is_the_latest_issue_time(store: Engine) -> None:
    early, late = _publication(), _publication(issued_at=T0 + timedelta(hours=1))
    fs.publish_run(store, late, created_at=T0)
    fs.publish_run(store, early, created_at=T0 + timedelta(minutes=5))
    assert fs.latest_run_id(store, "site-a") == late.run_id
    assert fs.latest_run_id(store, "site-b") is None
    assert fs.list_published_sites(store) == ["site-a"]


def _fail_on_intervals_insert(conn, cursor, statement, *args) -> None:
    if statement.lstrip().upper().startswith("INSERT INTO INTERVALS"):
        msg = "simulated crash while writing intervals"
        raise RuntimeError(msg)


def test_publish_failing_midway_leaves_the_previous_run(store: Engine) -> None:
    first = _publication()
    fs.publish_run(store, first, created_at=T0)
    second = _publication(issued_at=T0 + timedelta(hours=1))
    sa.event.listen(store, "before_cursor_execute", _fail_on_intervals_insert)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fs.publish_run(store, second, created_at=T0)
    sa.event.remove(store, "before_cursor_execute", _fail_on_intervals_insert)
    assert fs.latest_run_id(store, "site-a") == first.run_id
    assert fs.read_run(store, second.run_id) is None
    assert fs.publish_run(store, second, created_at=T0) is True  # a retry then succeeds
    assert fs.latest_run_id(store, "site-a") == second.run_id


_CRASHING_PUBLISHER = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime, timedelta
    import sqlalchemy as sa
    from forecasting.config import SiteConfig
    from forecasting.io import forecast_store as fs
    from forecasting.publication.examples import build_example_run
    from forecasting.publication.targets import build_publication

    site = SiteConfig(site_id="site-a", name="A", latitude=56.0, longitude=-3.0,
                      timezone="UTC", grid_limit_kw=100)
    issued = datetime(2024, 6, 1, 1, tzinfo=UTC)
    publication = build_publication(build_example_run("site-a", issued_at=issued, hours=6),
                                    site=site)
    engine = fs.open_store(sys.argv[1])

    @sa.event.listens_for(engine, "before_cursor_execute")
    def die(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO INTERVALS"):
            os._exit(17)  # the process dies inside the open transaction

    fs.publish_run(engine, publication, created_at=issued)
    """
)


def test_publisher_killed_midway_leaves_the_previous_run(store: Engine, store_url: str) -> None:
    first = _publication()
    fs.publish_run(store, first, created_at=T0)
    result = subprocess.run(
        [sys.executable, "-c", _CRASHING_PUBLISHER, store_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 17, result.stderr
    time.sleep(0.1)  # PostgreSQL notices the dropped connection and aborts its transaction
    assert fs.latest_run_id(store, "site-a") == first.run_id
    with store.connect() as conn:
        runs = conn.execute(sa.select(fs.RUNS.c.run_id)).scalars().all()
    assert runs == [first.run_id]


def test_retention_keeps_recent_and_latest_runs(store: Engine) -> None:
    runs = [_publication(issued_at=T0 + timedelta(days=d)) for d in range(5)]
    for publication in runs:
        fs.publish_run(store, publication, created_at=publication.issued_at)
    now = T0 + timedelta(days=4, hours=1)
    deleted = fs.apply_retention(store, now=now, keep_runs=2, keep_days=2.5)
    # kept: the 2 latest (days 4, 3) and those issued within 2.5 days (days 2..4)
    assert sorted(deleted) == sorted([runs[0].run_id, runs[1].run_id])
    everything = fs.apply_retention(store, now=now + timedelta(days=30), keep_runs=0)
    assert everything == [runs[3].run_id, runs[2].run_id]
    assert fs.latest_run_id(store, "site-a") == runs[4].run_id  # never the latest
    with store.connect() as conn:
        left = conn.execute(sa.select(fs.INTERVALS.c.run_id).distinct()).scalars().all()
    assert left == [runs[4].run_id]


def test_tokens_and_audit_round_trip(store: Engine) -> None:
    record = fs.TokenRecord(
        token_id="0123456789abcdef",
        secret_sha256="f" * 64,
        sites=("site-a", "site-b"),
        created_at=T0,
        expires_at=T0 + timedelta(days=1),
    )
    fs.write_token(store, record)
    assert fs.read_token(store, "0123456789abcdef") == record
    assert fs.read_token(store, "fedcba9876543210") is None
    audit = [
        fs.AuditRecord(T0, "0123456789abcdef", "site-a", "/v1/sites/site-a/forecast", 200, "r1"),
        fs.AuditRecord(T0, None, None, "/v1/sites", 401, None),
    ]
    fs.write_audit(store, audit)
    expected = pl.DataFrame(
        {
            "at": [T0, T0],
            "token_id": ["0123456789abcdef", None],
            "site_id": ["site-a", None],
            "path": ["/v1/sites/site-a/forecast", "/v1/sites"],
            "status": [200, 401],
            "run_id": ["r1", None],
        },
        schema_overrides={"at": pl.Datetime("us", "UTC"), "status": pl.Int64},
    )
    assert_frame_equal(fs.read_audit(store), expected)
