"""The nightly flow on the bundled sample, for real: ingest, train, promote, forecast, publish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from flows import tasks
from flows.nightly import run_nightly
from forecasting.errors import StoreError
from forecasting.io.forecast_store import RUNS, open_store, publish_run, read_latest_run
from forecasting.io.tracking import connect_tracking, read_aliases
from forecasting.registry import build_model_name
from forecasting.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

NIGHT = date(2019, 8, 30)
SITE = "broxden-park-ride-perth"


def _aliases(settings: Settings, site_id: str) -> dict[str, str]:
    tracking = connect_tracking(
        settings.tracking_uri, artifact_root=settings.mlflow_dir / "artifacts"
    )
    return read_aliases(tracking, build_model_name(site_id))


def _runs(settings: Settings) -> pl.DataFrame:
    with open_store(settings.forecast_store_url).connect() as conn:
        rows = conn.execute(sa.select(RUNS.c.run_id, RUNS.c.site_id, RUNS.c.issued_at)).all()
    return pl.DataFrame(
        [tuple(r) for r in rows], schema=["run_id", "site_id", "issued_at"], orient="row"
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EVCAST_HOME", str(tmp_path / "home"))
    return Settings()


def _failing_once(calls: list[str]) -> Callable[..., bool]:
    def publish(*args: object, **kwargs: object) -> bool:
        calls.append("publish")
        if len(calls) == 1:
            msg = "forecast store is locked (injected); retry"
            raise StoreError(msg)
        return publish_run(*args, **kwargs)  # type: ignore[arg-type]

    return publish


def test_nightly_registers_publishes_retries_and_is_idempotent(
    home: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_pipeline: Callable[..., Path],
) -> None:
    pipeline = write_pipeline(tmp_path / "config", sites=(SITE,))
    calls: list[str] = []
    monkeypatch.setattr(tasks, "publish_run", _failing_once(calls))

    first = run_nightly(NIGHT, config_file=pipeline)

    site = SITE
    assert calls == ["publish", "publish"]  # the injected failure was retried once
    assert first.ingested.balanced
    assert first.sites[site]["trained"] is True
    assert first.sites[site]["published"] is True
    assert _aliases(home, site) == {"champion": "1"}
    stored = read_latest_run(open_store(home.forecast_store_url), site)
    assert stored is not None
    assert stored.publication.run_id == first.sites[site]["run_id"]
    assert stored.publication.issued_at == datetime(2019, 8, 30, tzinfo=UTC)
    assert stored.publication.targets["demand"].models["demand"].name == build_model_name(site)
    demand = stored.publication.intervals.filter(pl.col("target") == "demand")
    assert demand.height == 24
    assert (demand["p10"] <= demand["p50"]).all()
    assert (demand["p50"] <= demand["p90"]).all()

    again = run_nightly(NIGHT, config_file=pipeline)

    assert again.sites[site]["trained"] is False
    assert again.sites[site]["published"] is False
    assert again.sites[site]["run_id"] == first.sites[site]["run_id"]
    assert _aliases(home, site) == {"champion": "1"}  # no new version for unchanged data
    assert _runs(home).height == 1


@pytest.fixture(scope="module")
def served_night(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_server: None,
    write_pipeline: Callable[..., Path],
) -> Iterator[tuple[Settings, Path]]:
    """A home where night 2019-08-30 was processed and published (shared by the fault tests)."""
    folder = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVCAST_HOME", str(folder / "home"))
        pipeline = write_pipeline(folder / "config", sites=(SITE,))
        run_nightly(NIGHT, config_file=pipeline)
        yield Settings(), pipeline


def _assert_previous_served(settings: Settings) -> None:
    runs = _runs(settings)
    assert runs["issued_at"].dt.date().unique().to_list() == [NIGHT]
    latest = read_latest_run(open_store(settings.forecast_store_url), SITE)
    assert latest is not None
    assert latest.publication.issued_at.date() == NIGHT


def test_crash_before_publish_leaves_previous_forecast(
    served_night: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, pipeline = served_night
    monkeypatch.setenv("EVCAST_HOME", str(settings.home))

    def crash(*_args: object, **_kwargs: object) -> None:
        msg = "process killed between training and publishing (injected)"
        raise RuntimeError(msg)

    monkeypatch.setattr(tasks, "build_publication", crash)

    with pytest.raises(RuntimeError, match="injected"):
        run_nightly(date(2019, 8, 31), config_file=pipeline)

    _assert_previous_served(settings)


def test_unreachable_mlflow_fails_after_retries_without_moving_aliases(
    served_night: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, pipeline = served_night
    monkeypatch.setenv("EVCAST_HOME", str(settings.home))
    aliases = _aliases(settings, SITE)
    monkeypatch.setenv("EVCAST_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard: refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")

    with pytest.raises(StoreError, match="did not answer"):
        run_nightly(date(2019, 8, 31), config_file=pipeline)

    monkeypatch.delenv("EVCAST_MLFLOW_TRACKING_URI")
    assert _aliases(settings, SITE) == aliases
    _assert_previous_served(settings)


_TERMINATE_BEFORE_PUBLISH = """
import os, signal, sys
from datetime import date
from pathlib import Path

from flows import tasks
from flows.nightly import run_nightly


def terminate(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # a real SIGTERM, just before the first publish
    raise SystemExit("SIGTERM was ignored")


tasks.publish_run = terminate
run_nightly(date.fromisoformat(sys.argv[2]), config_file=Path(sys.argv[1]))
"""


def test_sigterm_before_publish_leaves_previous_forecast(
    served_night: tuple[Settings, Path], tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    settings, pipeline = served_night
    script = tmp_path / "terminate.py"
    script.write_text(_TERMINATE_BEFORE_PUBLISH)
    env = {
        **os.environ,
        "EVCAST_HOME": str(settings.home),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }

    done = subprocess.run(
        [sys.executable, str(script), str(pipeline), "2019-09-01"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == -signal.SIGTERM, done.stderr[-2000:]
    tracking = connect_tracking(
        settings.tracking_uri, artifact_root=settings.mlflow_dir / "artifacts"
    )
    versions = tracking.client.search_model_versions(f"name = '{build_model_name(SITE)}'")
    assert "2019-09-01T00:00:00+00:00" in {v.tags.get("issued_at") for v in versions}
    _assert_previous_served(settings)
