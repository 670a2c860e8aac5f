"""``evcast tokens create`` and ``evcast fetch`` against a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from api_support import SITES, T0, publish_example
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from forecasting.api import ApiConfig, create_app
from forecasting.cli import app as cli
from forecasting.cli.tokens import parse_expiry
from forecasting.errors import ConfigError
from forecasting.io.forecast_store import TOKENS, open_store
from forecasting.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path))
    return Settings()


def test_token_is_printed_once_on_the_last_line_and_works(home: Settings) -> None:
    result = CliRunner().invoke(
        cli, ["tokens", "create", "--site", "site-a", "--site", "site-b", "--expires", "30d"]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.rstrip("\n").splitlines()[-1]
    assert token.startswith("evc_")
    assert result.stdout.count(token) == 1
    store = open_store(home.forecast_store_url)
    with store.connect() as conn:
        stored = conn.execute(sa.select(TOKENS)).one()
    assert token.split("_", 2)[2] not in str(stored)  # only the hash is kept
    assert stored.sites == '["site-a", "site-b"]'
    publish_example(store, "site-a", issued_at=T0)
    app = create_app(home, store, SITES, config=ApiConfig(), clock=lambda: T0)
    with TestClient(app) as client:
        ok = client.get("/v1/sites/site-a/forecast", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--site", "../etc"], "valid site id", id="bad-site"),
        pytest.param(
            ["--site", "site-a", "--expires", "2020-01-01T00:00Z"],
            "not in the future",
            id="past-expiry",
        ),
        pytest.param(
            ["--site", "site-a", "--expires", "soon"], "neither a duration", id="garbage-expiry"
        ),
    ],
)
def test_token_creation_refuses_bad_input(home: Settings, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["tokens", "create", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)


def test_expiry_parsing() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_expiry("12h", now=now) == now + timedelta(hours=12)
    assert parse_expiry("2024-02-01T00:00+01:00", now=now) == datetime(2024, 1, 31, 23, tzinfo=UTC)
    with pytest.raises(ConfigError, match="neither"):
        parse_expiry("2024-02-01", now=now)


def test_fetch_from_the_store_as_csv(home: Settings) -> None:
    run_id = publish_example(open_store(home.forecast_store_url), "site-a", issued_at=T0)
    result = CliRunner().invoke(
        cli, ["fetch", "--site", "site-a", "--target", "demand", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(result.stdout.encode())
    assert frame.height == 192
    assert frame["run_id"].unique().to_list() == [run_id]
    assert frame["stale"].unique().to_list() == [True]  # issued in 2024
    missing = CliRunner().invoke(cli, ["fetch", "--site", "site-b"])
    assert missing.exit_code != 0
    assert "no forecast has been published" in str(missing.exception)
