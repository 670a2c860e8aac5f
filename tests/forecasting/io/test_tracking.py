from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import polars as pl
import pytest
import requests
from mlflow.exceptions import MlflowException
from polars.testing import assert_frame_equal

from forecasting.config import SiteConfig
from forecasting.errors import StoreError
from forecasting.io.tracking import (
    CHAMPION,
    RetryPolicy,
    Tracking,
    TrainingRecord,
    call_with_retries,
    connect_tracking,
    is_transient,
    list_models,
    load_model_by_alias,
    log_training_run,
    register_model,
    set_alias,
)
from forecasting.io.tracking_model import (
    ForecasterModel,
    ModelSmokeCheckError,
    build_interval_starts,
)
from forecasting.schemas import SESSIONS_SCHEMA, conform
from tests.support import LAB_SITE as SITE

ISSUED_AT = datetime(2024, 1, 15, tzinfo=UTC)
HOUR = timedelta(hours=1)
NAME = "evcast-lab-demand"


def sessions(days: int) -> pl.DataFrame:
    """One session a day, 08:00-10:00 UTC, 2 kWh more each day [kWh]."""
    start = ISSUED_AT - timedelta(days=days)
    rows = [
        {
            "site_id": "lab",
            "station_id": "s1",
            "connector_id": "1",
            "session_id": f"d{day}",
            "plug_in_at": start + timedelta(days=day, hours=8),
            "plug_out_at": start + timedelta(days=day, hours=10),
            "energy_kwh": 2.0 * (day + 1),
            "source": f"synthetic.csv:{day + 1}",
            "ingested_at": ISSUED_AT,
        }
        for day in range(days)
    ]
    return conform(pl.DataFrame(rows), SESSIONS_SCHEMA)


class HourlyProfile:
    """Mean energy of the sessions plugged in at each UTC hour of day [kWh]."""

    name = "hourly_profile"

    def __init__(self, *, spread: float = 0.5) -> None:
        self.spread = spread

    def fit(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        weather: pl.DataFrame | None = None,
    ) -> Self:
        self.profile_ = sessions.group_by(hour=pl.col("plug_in_at").dt.hour()).agg(
            pl.col("energy_kwh").mean().alias("level")
        )
        self.features_ = ("hour",)
        self.feature_importances_ = {"hour": 1.0}
        return self

    def predict(
        self,
        sessions: pl.DataFrame,
        *,
        site: SiteConfig,
        issued_at: datetime,
        interval_starts: pl.Series,
        weather: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        frame = pl.DataFrame({"interval_start": interval_starts})
        level = (
            frame.with_columns(hour=pl.col("interval_start").dt.hour())
            .join(self.profile_, on="hour", how="left")["level"]
            .fill_null(0.0)
        )
        return frame.with_columns(
            p10=level * (1 - self.spread),
            p50=level,
            p90=level * (1 + self.spread),
            note=pl.lit(None, pl.String),
        )


def _record(forecaster: HourlyProfile, history: pl.DataFrame) -> TrainingRecord:
    return TrainingRecord(
        model=ForecasterModel(forecaster, site=SITE, resolution=HOUR),
        params={"spread": str(forecaster.spread), "data_fingerprint": "abc"},
        metrics={"eval_pinball": 1.25},
        tags={"site_id": "lab", "target": "demand"},
        features=forecaster.features_,
        importance=forecaster.feature_importances_,
        example=history.tail(3),
        issued_at=ISSUED_AT,
        horizon=timedelta(hours=24),
    )


def _log_and_register(tracking: Tracking, forecaster: HourlyProfile, history: pl.DataFrame) -> str:
    run_id = log_training_run(tracking, _record(forecaster, history), run_name="lab")
    return register_model(
        tracking,
        name=NAME,
        run_id=run_id,
        tags={"eval_pinball": "1.25", "model_kind": forecaster.name},
        model_tags={"site_id": "lab", "target": "demand"},
    )


@pytest.mark.slow
def test_round_trip_is_deterministic_and_logs_everything(
    tracking: Tracking, tmp_path: Path
) -> None:
    history = sessions(10)
    fitted = HourlyProfile().fit(history, site=SITE, issued_at=ISSUED_AT)
    version = _log_and_register(tracking, fitted, history)
    assert load_model_by_alias(tracking, name=NAME, alias=CHAMPION) is None
    set_alias(tracking, name=NAME, alias=CHAMPION, version=version)

    loaded = load_model_by_alias(tracking, name=NAME, alias=CHAMPION)
    assert loaded is not None
    assert (loaded.version, loaded.tags["model_kind"]) == ("1", "hourly_profile")
    expected = ForecasterModel(fitted, site=SITE, resolution=HOUR).forecast(
        history, issued_at=ISSUED_AT, horizon=timedelta(hours=24)
    )
    for _ in range(2):
        again = loaded.model.forecast(history, issued_at=ISSUED_AT, horizon=timedelta(hours=24))
        assert_frame_equal(again, expected)
    assert expected["p50"].max() == pytest.approx(2.0 * 55 / 10)  # mean of 2, 4, ... 20 kWh

    run = tracking.client.get_run(loaded.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data_fingerprint"] == "abc"
    assert run.data.metrics["eval_pinball"] == 1.25
    artifacts = {a.path for a in tracking.client.list_artifacts(loaded.run_id)}
    assert artifacts == {"features.json", "feature_importance.png", "model"}
    stored = tracking.client.get_experiment(tracking.experiment_id).artifact_location
    assert stored == (tmp_path / "mlflow" / "artifacts").resolve().as_uri()
    [summary] = list_models(tracking, prefix="evcast-")
    assert (summary.site_id, summary.champion.version, summary.champion.score) == ("lab", "1", 1.25)
    assert summary.challenger is None


@pytest.mark.slow
def test_runs_logged_from_threads_keep_their_own_content(tracking: Tracking) -> None:
    history = sessions(10)
    models = [
        HourlyProfile(spread=s).fit(history, site=SITE, issued_at=ISSUED_AT) for s in (0.1, 0.9)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        run_ids = list(
            pool.map(
                lambda m: log_training_run(tracking, _record(m, history), run_name="t"), models
            )
        )
    spreads = [tracking.client.get_run(run_id).data.params["spread"] for run_id in run_ids]
    assert spreads == ["0.1", "0.9"]
    assert len(set(run_ids)) == 2


@pytest.mark.slow
def test_smoke_check_fails_on_a_broken_artifact(tracking: Tracking, tmp_path: Path) -> None:
    history = sessions(10)
    version = _log_and_register(
        tracking, HourlyProfile().fit(history, site=SITE, issued_at=ISSUED_AT), history
    )
    set_alias(tracking, name=NAME, alias=CHAMPION, version=version)
    [pickled] = (tmp_path / "mlflow" / "artifacts").rglob("python_model.pkl")
    pickled.write_bytes(b"not a pickle")
    with pytest.raises(ModelSmokeCheckError, match=r"version 1 \(champion\) cannot be loaded"):
        load_model_by_alias(tracking, name=NAME, alias=CHAMPION)


@pytest.mark.slow
def test_smoke_check_fails_on_crossed_quantiles(tracking: Tracking) -> None:
    history = sessions(10)
    crossed = HourlyProfile(spread=-0.5).fit(history, site=SITE, issued_at=ISSUED_AT)
    version = _log_and_register(tracking, crossed, history)
    set_alias(tracking, name=NAME, alias=CHAMPION, version=version)
    with pytest.raises(ModelSmokeCheckError, match="fails its smoke check: 1 rows are not finite"):
        load_model_by_alias(tracking, name=NAME, alias=CHAMPION)


@pytest.mark.parametrize(
    ("issued_at", "first", "count"),
    [
        pytest.param(
            datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), 24, id="on-grid"
        ),
        pytest.param(
            datetime.fromisoformat("2024-01-01T05:30:00+05:30"),
            datetime(2024, 1, 1, tzinfo=UTC),
            24,
            id="other-offset-same-instant",
        ),
        pytest.param(
            datetime(2024, 1, 1, 0, 30, tzinfo=UTC),
            datetime(2024, 1, 1, 1, tzinfo=UTC),
            24,
            id="off-grid",
        ),
    ],
)
def test_interval_starts_round_up_to_the_utc_grid(
    issued_at: datetime, first: datetime, count: int
) -> None:
    starts = build_interval_starts(issued_at, horizon=timedelta(hours=24), resolution=HOUR)
    assert (starts[0], starts.len(), str(starts.dtype)) == (
        first,
        count,
        "Datetime(time_unit='us', time_zone='UTC')",
    )


def _connection_error() -> MlflowException:
    try:
        try:
            raise requests.exceptions.ConnectionError("connection refused")
        except requests.exceptions.ConnectionError as inner:
            msg = "API request failed"
            raise MlflowException(msg) from inner
    except MlflowException as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(_connection_error(), True, id="wrapped-connection-error"),
        pytest.param(requests.exceptions.Timeout("slow"), True, id="timeout"),
        pytest.param(MlflowException("bad value"), False, id="mlflow-invalid"),
        pytest.param(ValueError("bug"), False, id="bug"),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retries_transient_errors_then_succeeds() -> None:
    failures = [_connection_error(), _connection_error()]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    policy = RetryPolicy(attempts=3, first_delay_s=0.001)
    assert call_with_retries(flaky, policy=policy, what="test") == "ok"
    assert failures == []


def test_does_not_retry_other_errors() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        call_with_retries(broken, policy=RetryPolicy(attempts=3, first_delay_s=0.001), what="x")
    assert calls == [1]


def test_other_store_errors_fail_at_once_as_store_errors() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        msg = "RESOURCE_DOES_NOT_EXIST: no such run"
        raise MlflowException(msg)

    policy = RetryPolicy(attempts=3, first_delay_s=0.001)
    with pytest.raises(StoreError, match="failed to read a run: RESOURCE_DOES_NOT_EXIST"):
        call_with_retries(refused, policy=policy, what="read a run", uri="sqlite:///x.db")
    assert calls == [1]


class _Unavailable(BaseHTTPRequestHandler):
    """Answers every request with 503 and counts them."""

    hits: list[str] = []  # noqa: RUF012 -- one shared counter per test run

    def _refuse(self) -> None:
        self.hits.append(self.path)
        self.send_response(503)
        self.end_headers()

    def do_GET(self) -> None:
        self._refuse()

    def do_POST(self) -> None:
        self._refuse()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


def test_unreachable_store_fails_after_bounded_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # count only our retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    _Unavailable.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreError, match=r"did not answer .* \(3 attempts\)"):
            connect_tracking(
                f"http://127.0.0.1:{server.server_port}",
                artifact_root=tmp_path / "artifacts",
                retry=RetryPolicy(attempts=3, first_delay_s=0.01),
            )
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Unavailable.hits) == 3
    assert not (tmp_path / "artifacts").exists()
