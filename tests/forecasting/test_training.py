from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from forecasting.cli import app
from forecasting.errors import SchemaError, StoreError
from forecasting.io.lake import upsert_table
from forecasting.io.tracking import CHALLENGER, CHAMPION, Tracking, connect_tracking, read_aliases
from forecasting.schemas import SESSIONS_KEY, SESSIONS_SCHEMA
from forecasting.training import (
    TrainingOptions,
    read_feature_importance,
    read_hyperparameters,
    train_site,
)
from models.baselines import SeasonalNaive
from tests.support import LAB_SITE as SITE
from tests.support import FlatForecaster, weekly_sessions

START = datetime(2024, 1, 1, tzinfo=UTC)
ISSUED_AT = START + timedelta(days=42)
NAME = "evcast-lab-demand"
OPTIONS = TrainingOptions(evaluation_days=7, example_days=14)
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _train(tracking: Tracking, factory: object, sessions: pl.DataFrame) -> object:
    return train_site(
        sessions,
        site=SITE,
        forecaster_factory=factory,  # type: ignore[arg-type]
        tracking=tracking,
        issued_at=ISSUED_AT,
        options=OPTIONS,
    )


@pytest.mark.slow
def test_first_model_is_champion_worse_stays_challenger_better_is_promoted(
    tracking: Tracking,
) -> None:
    sessions = weekly_sessions(49)  # a week beyond ISSUED_AT: never seen by training
    first = _train(tracking, lambda site: FlatForecaster(scale=1.0), sessions)
    assert (first.version, first.decision.promote, first.champion) == ("1", True, None)
    assert read_aliases(tracking, NAME) == {CHAMPION: "1"}

    worse = _train(tracking, lambda site: FlatForecaster(scale=4.0), sessions)
    assert (worse.version, worse.decision.promote, worse.champion_version) == ("2", False, "1")
    assert worse.champion.pinball == pytest.approx(first.challenger.pinball, rel=1e-12)
    assert worse.challenger.pinball > worse.champion.pinball
    assert read_aliases(tracking, NAME) == {CHAMPION: "1", CHALLENGER: "2"}

    better = _train(tracking, lambda site: SeasonalNaive(), sessions)
    assert (better.version, better.decision.promote) == ("3", True)
    assert better.challenger.mae == pytest.approx(0.0, abs=1e-9)  # the data repeat weekly
    assert read_aliases(tracking, NAME) == {CHAMPION: "3"}

    tags = tracking.client.get_model_version(NAME, "2").tags
    assert tags["promotion"] == CHALLENGER
    assert float(tags["eval_pinball"]) == worse.challenger.pinball
    assert float(tags["champion_eval_pinball"]) == worse.champion.pinball
    assert "does not beat" in tags["promotion_reason"]
    run = tracking.client.get_run(better.run_id).data
    assert run.metrics["promoted"] == 1.0
    assert run.metrics["champion_eval_pinball"] == better.champion.pinball
    assert run.params["data_end"] < ISSUED_AT.isoformat()
    assert run.params["eval_end"] == "2024-02-11"
    assert len(run.params["data_fingerprint"]) == 64
    assert run.tags["promotion"] == CHAMPION


@pytest.mark.slow
def test_champion_failing_its_smoke_check_is_replaced(tracking: Tracking, tmp_path: Path) -> None:
    sessions = weekly_sessions(42)
    _train(tracking, lambda site: FlatForecaster(scale=1.0), sessions)
    [pickled] = (tmp_path / "mlflow" / "artifacts").rglob("python_model.pkl")
    pickled.write_bytes(b"broken")
    worse = _train(tracking, lambda site: FlatForecaster(scale=4.0), sessions)
    assert (worse.decision.promote, worse.champion) == (True, None)
    assert "version 1 (champion) cannot be loaded" in worse.champion_problem
    assert read_aliases(tracking, NAME) == {CHAMPION: "2"}
    assert (
        "cannot be loaded" in tracking.client.get_model_version(NAME, "2").tags["champion_problem"]
    )


@pytest.mark.slow
def test_a_store_failing_part_way_moves_no_alias(tracking: Tracking, tmp_path: Path) -> None:
    sessions = weekly_sessions(42)
    _train(tracking, lambda site: FlatForecaster(scale=1.0), sessions)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("artifacts cannot be written below a file")
    broken_id = tracking.client.create_experiment("broken", artifact_location=blocker.as_uri())
    broken = Tracking(tracking.client, broken_id, tracking.tracking_uri, tracking.retry)
    with pytest.raises(StoreError, match="failed to log features"):
        _train(broken, lambda site: SeasonalNaive(), sessions)
    assert read_aliases(tracking, NAME) == {CHAMPION: "1"}
    assert [str(v.version) for v in tracking.client.search_model_versions(f"name = '{NAME}'")] == [
        "1"
    ]
    [failed] = tracking.client.search_runs([broken_id])
    assert failed.info.status == "FAILED"


def test_training_needs_known_sessions(tracking: Tracking) -> None:
    late = weekly_sessions(49).filter(pl.col("plug_out_at") >= ISSUED_AT)
    with pytest.raises(SchemaError, match="has no sessions that ended before"):
        _train(tracking, lambda site: FlatForecaster(), late)
    assert read_aliases(tracking, NAME) == {}


def test_read_hyperparameters_and_importance() -> None:
    forecaster = FlatForecaster(scale=2.0).fit(weekly_sessions(7), site=SITE, issued_at=ISSUED_AT)
    assert read_hyperparameters(forecaster) == {"scale": "2.0"}
    assert read_feature_importance(forecaster) == {}
    naive = read_hyperparameters(SeasonalNaive())
    assert (naive["name"], naive["lag_days"]) == ("seasonal_naive", "7")


@pytest.mark.slow
def test_cli_trains_and_lists_models(
    template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, config = tmp_path / "home", tmp_path / "configs"
    config.mkdir()
    (config / "sites.toml").write_text(
        '[[sites]]\nsite_id = "lab"\nname = "Lab"\nlatitude = 56.4\nlongitude = -3.4\n'
        'timezone = "UTC"\n'
    )
    monkeypatch.setenv("EVCAST_HOME", str(home))
    monkeypatch.setenv("EVCAST_CONFIG_DIR", str(config))
    monkeypatch.chdir(tmp_path)
    (home / "mlflow").mkdir(parents=True)
    shutil.copy(template_db, home / "mlflow" / "mlflow.db")
    upsert_table(
        home / "lake", "sessions", weekly_sessions(42), schema=SESSIONS_SCHEMA, key=SESSIONS_KEY
    )
    runner = CliRunner()
    trained = runner.invoke(
        app, ["train", "--model", "seasonal_naive", "--evaluation-days", "7", "--json"]
    )
    assert trained.exit_code == 0, trained.output
    [result] = json.loads(trained.stdout.strip().splitlines()[-1])
    assert (result["site_id"], result["version"], result["promoted"]) == ("lab", "1", True)
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout.strip().splitlines()[-1])
    assert (entry["name"], entry["champion"]["version"]) == (NAME, "1")
    assert entry["champion"]["model_kind"] == "seasonal_naive"
    assert entry["champion"]["trained_at"] == "2024-02-12T00:00:00+00:00"
    assert entry["challenger"] is None
    assert not (tmp_path / "mlruns").exists()


def _postgres(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as the postgres user when we are root (initdb refuses root)."""
    command = [str(PG_BIN / args[0]), *args[1:]]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    """An MLflow tracking URI on a throwaway PostgreSQL server; skipped when none can start."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser, and initdb refuses to run as root")
    folder = Path(tempfile.mkdtemp(prefix="evcast-mlflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, user="postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = str(folder / "data")
    try:
        made = _postgres("initdb", "-D", data, "-U", "postgres", "-A", "trust")
        if made.returncode:
            pytest.skip(f"initdb failed: {made.stderr[:300]}")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -F"
        up = _postgres("pg_ctl", "-D", data, "-o", options, "-w", "-l", f"{folder}/log", "start")
        if up.returncode:
            pytest.skip(f"pg_ctl start failed: {up.stderr[:300]}")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _postgres("pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_promotion_on_a_postgresql_store(postgres_uri: str, tmp_path: Path) -> None:
    tracking = connect_tracking(postgres_uri, artifact_root=tmp_path / "artifacts")
    sessions = weekly_sessions(42)
    first = _train(tracking, lambda site: FlatForecaster(scale=1.0), sessions)
    worse = _train(tracking, lambda site: FlatForecaster(scale=4.0), sessions)
    assert (first.decision.promote, worse.decision.promote) == (True, False)
    assert read_aliases(tracking, NAME) == {CHAMPION: "1", CHALLENGER: "2"}
    assert any((tmp_path / "artifacts").rglob("python_model.pkl"))
