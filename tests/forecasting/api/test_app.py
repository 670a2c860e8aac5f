"""Fine-grained API behaviour through FastAPI's test client (real store, real app)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa
from api_support import SIGNING_KEY, T0, AppFactory, Env, publish_example
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from forecasting.api import audit as audit_module
from forecasting.api import service as service_module
from forecasting.api.signing import SIGNATURE_HEADER, verify_signature
from forecasting.io.forecast_store import AuditRecord, latest_run_id, read_audit, write_audit
from forecasting.publication.ocpp import validate_charging_profile

FORECAST_A = "/v1/sites/site-a/forecast"
PROBLEM = "application/problem+json"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_problem(response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://evcast.dev/problems/")
    assert detail in body["detail"]


def test_forecast_carries_identity_validators_and_a_valid_signature(
    client: TestClient, env: Env
) -> None:
    params = {"target": "net", "from": "2024-06-01T01:00:00Z", "to": "2024-06-01T03:00:00+00:00"}
    response = client.get(FORECAST_A, params=params, headers=_auth(env.token_ab))
    assert response.status_code == 200
    body = response.json()
    assert body["run_id"] == env.run_a == response.headers["x-evcast-run-id"]
    assert body["site_id"] == "site-a"
    assert (body["issued_at"], body["expires_at"]) == (
        "2024-06-01T00:00:00Z",
        "2024-06-01T06:00:00Z",
    )
    assert body["stale"] is False
    assert body["fallback"] == {"active": False, "reason": None}
    assert body["models"]["demand"] == {"name": "demand-lgbm", "version": "3", "alias": "champion"}
    assert body["interval"]["label"] == "interval-start"
    assert len(body["intervals"]) == 8
    # the clock is one hour after issue: five hours of validity left
    assert response.headers["cache-control"] == "private, max-age=18000"
    signature = response.headers[SIGNATURE_HEADER]
    assert verify_signature(response.content, signature, key=SIGNING_KEY.encode())
    tampered = response.content.replace(b'"stale":false', b'"stale":true ')
    assert not verify_signature(tampered, signature, key=SIGNING_KEY.encode())
    again = client.get(
        FORECAST_A,
        params=params,
        headers={**_auth(env.token_ab), "If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    ("headers", "detail", "error"),
    [
        pytest.param({}, "bearer token is required", None, id="missing"),
        pytest.param(
            {"Authorization": "Basic dXNlcjpwdw=="},
            "bearer token is required",
            None,
            id="not-bearer",
        ),
        pytest.param(_auth("not-a-token"), "invalid", "invalid_token", id="malformed"),
        pytest.param(
            _auth("evc_0123456789abcdef_" + "x" * 43), "invalid", "invalid_token", id="unknown-id"
        ),
    ],
)
def test_requests_without_a_valid_token_get_401(
    client: TestClient, headers: dict[str, str], detail: str, error: str | None
) -> None:
    response = client.get(FORECAST_A, headers=headers)
    _assert_problem(response, 401, detail)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="evcast"')
    assert (f'error="{error}"' in challenge) == (error is not None)


def test_wrong_secret_and_expired_tokens_get_401(client: TestClient, env: Env) -> None:
    token_id = env.token_ab.split("_")[1]
    forged = f"evc_{token_id}_{'A' * 43}"
    _assert_problem(client.get(FORECAST_A, headers=_auth(forged)), 401, "invalid")
    _assert_problem(client.get(FORECAST_A, headers=_auth(env.token_expired)), 401, "expired")


def test_a_site_outside_the_scope_looks_exactly_like_an_unknown_site(
    client: TestClient, env: Env
) -> None:
    foreign = client.get(FORECAST_A, headers=_auth(env.token_c))
    unknown = client.get("/v1/sites/site-zz/forecast", headers=_auth(env.token_c))
    _assert_problem(foreign, 404, "site 'site-a' not found")
    _assert_problem(unknown, 404, "site 'site-zz' not found")
    assert foreign.json()["type"] == unknown.json()["type"]
    sites = client.get("/v1/sites", headers=_auth(env.token_c)).json()["sites"]
    assert [s["site_id"] for s in sites] == ["site-c"]


@pytest.mark.parametrize(
    "raw_site",
    [
        pytest.param("..%2F..%2Fetc%2Fpasswd", id="encoded-traversal"),
        pytest.param("..%252F..%252Fetc", id="double-encoded"),
        pytest.param("site-a%00", id="nul-byte"),
        pytest.param("SITE-A", id="uppercase"),
        pytest.param("site-a'%20OR%20'1'='1", id="sql-injection"),
        pytest.param("%3Cscript%3E", id="markup"),
        pytest.param("a" * 65, id="too-long"),
        pytest.param("-site", id="leading-dash"),
    ],
)
def test_bad_site_ids_are_refused_without_leaking(
    client: TestClient, env: Env, raw_site: str
) -> None:
    response = client.get(f"/v1/sites/{raw_site}/forecast", headers=_auth(env.token_ab))
    assert response.status_code in {400, 404}, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "intervals" not in response.text


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        pytest.param(
            {"from": "2024-06-01T00:00Z", "to": "2024-06-09T00:00Z"},
            "exceeds the limit of 168 h",
            id="too-long",
        ),
        pytest.param(
            {"from": "2024-06-02T00:00Z", "to": "2024-06-01T00:00Z"},
            "window is empty",
            id="reversed",
        ),
        pytest.param({"from": "2024-06-01T00:00"}, "UTC offset", id="naive"),
        pytest.param({"to": "tomorrow"}, "not an ISO 8601 instant", id="garbage"),
        pytest.param({"target": "wind"}, "target", id="unknown-target"),
    ],
)
def test_bad_windows_get_400_naming_the_problem(
    client: TestClient, env: Env, params: dict[str, str], detail: str
) -> None:
    response = client.get(FORECAST_A, params=params, headers=_auth(env.token_ab))
    _assert_problem(response, 400, detail)


def test_stale_run_is_marked_by_default(client: TestClient, env: Env) -> None:
    env.clock.now = T0 + timedelta(hours=7)
    response = client.get(FORECAST_A, headers=_auth(env.token_ab))
    body = response.json()
    assert body["stale"] is True
    assert body["run_id"] == env.run_a
    assert response.headers["cache-control"] == "no-cache"


def test_stale_run_is_replaced_by_a_marked_baseline_when_configured(
    make_app: AppFactory, env: Env
) -> None:
    env.clock.now = T0 + timedelta(days=5, minutes=20)
    with TestClient(make_app(stale_policy="baseline")) as client:
        body = client.get(
            FORECAST_A, params={"target": "headroom"}, headers=_auth(env.token_ab)
        ).json()
    assert body["stale"] is True
    assert body["fallback"]["active"] is True
    assert "baseline" in body["fallback"]["reason"]
    assert body["models"] == {"pv": {"name": "no-pv-baseline", "version": "1", "alias": None}}
    assert body["intervals"][0]["interval_start"] == "2024-06-06T00:15:00Z"
    # grid 200 kW minus other load 20 kW, no PV assumed
    assert {r["power_kw_p10"] for r in body["intervals"]} == {180.0}


def test_model_fallbacks_are_marked_on_the_targets_they_feed(client: TestClient, env: Env) -> None:
    for target, active in (("pv", True), ("net", True), ("headroom", True), ("demand", False)):
        body = client.get(
            "/v1/sites/site-c/forecast", params={"target": target}, headers=_auth(env.token_c)
        ).json()
        assert body["fallback"]["active"] is active, target
        if active:
            assert body["fallback"]["reason"] == "weather forecast missing: clear sky"


def test_schedule_is_a_valid_ocpp_profile_of_the_current_headroom(
    client: TestClient, env: Env
) -> None:
    env.clock.now = T0 + timedelta(hours=3, minutes=40)
    response = client.get("/v1/sites/site-a/schedule", headers=_auth(env.token_ab))
    assert response.status_code == 200
    assert verify_signature(
        response.content, response.headers[SIGNATURE_HEADER], key=SIGNING_KEY.encode()
    )
    payload = response.json()["set_charging_profile"]
    validate_charging_profile(payload)
    schedule = payload["chargingProfile"]["chargingSchedule"][0]
    assert schedule["startSchedule"] == "2024-06-01T03:30:00Z"
    assert schedule["chargingSchedulePeriod"][0] == {"startPeriod": 0, "limit": 180000}
    no_limit = client.get("/v1/sites/site-b/schedule", headers=_auth(env.token_ab))
    _assert_problem(no_limit, 404, "grid_limit_kw")


def test_rate_limit_answers_429_with_retry_after(make_app: AppFactory, env: Env) -> None:
    with TestClient(make_app(rate_per_s=0.5, burst=2)) as client:
        statuses = [
            client.get(FORECAST_A, headers=_auth(env.token_ab)).status_code for _ in range(3)
        ]
        limited = client.get(FORECAST_A, headers=_auth(env.token_ab))
        other = client.get("/v1/sites/site-c/forecast", headers=_auth(env.token_c))
    assert statuses == [200, 200, 429]
    _assert_problem(limited, 429, "rate limit")
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200  # the limit is per token


def test_audit_log_names_the_token_id_never_the_token(make_app: AppFactory, env: Env) -> None:
    with TestClient(make_app()) as client:
        client.get(FORECAST_A, headers=_auth(env.token_ab))
        client.get("/v1/sites/site-c/forecast", headers=_auth(env.token_ab))
        client.get("/v1/sites", headers=_auth("evc_bad"))
    audit = read_audit(env.store)  # the buffer is flushed when the app stops
    token_id = env.token_ab.split("_")[1]
    assert audit.select("token_id", "site_id", "status", "run_id").rows() == [
        (token_id, "site-a", 200, env.run_a),
        (token_id, "site-c", 404, None),
        (None, None, 401, None),
    ]
    secret = env.token_ab.split("_", 2)[2]
    assert not any(secret in str(value) for row in audit.rows() for value in row)


def test_a_publish_that_crashes_midway_leaves_the_previous_run_served(
    client: TestClient, env: Env
) -> None:
    def fail(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO INTERVALS"):
            msg = "disk full"
            raise OSError(msg)

    sa.event.listen(env.store, "before_cursor_execute", fail)
    with pytest.raises(OSError, match="disk full"):
        publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
    sa.event.remove(env.store, "before_cursor_execute", fail)
    body = client.get(FORECAST_A, headers=_auth(env.token_ab)).json()
    assert body["run_id"] == env.run_a
    newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
    assert client.get(FORECAST_A, headers=_auth(env.token_ab)).json()["run_id"] == newer


def test_a_newly_published_run_is_served_within_the_refresh_period(
    make_app: AppFactory, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 0.2
    in_refresher = threading.local()
    by_requests: list[str] = []  # latest-run lookups made by requests, not by the refresher

    def lookup(engine: Engine, site_id: str) -> str | None:
        if not getattr(in_refresher, "active", False):
            by_requests.append(site_id)
        return latest_run_id(engine, site_id)

    monkeypatch.setattr(service_module, "latest_run_id", lookup)
    with TestClient(make_app(latest_ttl_s=ttl)) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        refresh = service.refresh_recent

        def marked_refresh() -> int:
            in_refresher.active = True
            try:
                return refresh()
            finally:
                in_refresher.active = False

        monkeypatch.setattr(service, "refresh_recent", marked_refresh)
        assert client.get(FORECAST_A, headers=_auth(env.token_ab)).json()["run_id"] == env.run_a
        newer = publish_example(env.store, "site-a", issued_at=T0 + timedelta(minutes=30))
        published = time.monotonic()
        served = []
        while not served or served[-1] != newer:
            assert time.monotonic() - published < ttl + 2.0, served  # a period, a refresh, slack
            time.sleep(0.02)
            served.append(client.get(FORECAST_A, headers=_auth(env.token_ab)).json()["run_id"])
        time.sleep(1.5)  # longer than the TTL plus the refresher's slack: still no lookups
        assert client.get(FORECAST_A, headers=_auth(env.token_ab)).json()["run_id"] == newer
    assert set(served) <= {env.run_a, newer}
    assert by_requests == ["site-a"]  # only the first request looked the run up itself


def test_audit_records_are_kept_through_failed_writes_and_written_later(
    make_app: AppFactory,
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = {"next": True, "always": False}
    attempts: list[int] = []

    def flaky_write(engine: Engine, records: Sequence[AuditRecord]) -> None:
        attempts.append(len(records))
        if records and (failing["next"] or failing["always"]):
            failing["next"] = False
            msg = "database is locked"
            raise OSError(msg)
        write_audit(engine, records)

    monkeypatch.setattr(audit_module, "write_audit", flaky_write)
    with (
        caplog.at_level(logging.WARNING, logger="forecasting.api.app"),
        TestClient(make_app(audit_flush_s=0.05)) as client,
    ):
        client.get(FORECAST_A, headers=_auth(env.token_ab))
        deadline = time.monotonic() + 5.0  # the flusher retries every 0.05 s after the failure
        while read_audit(env.store).height == 0:
            assert time.monotonic() < deadline, attempts
            time.sleep(0.02)
        failing["always"] = True  # from now on, and also at shutdown
        client.get("/v1/sites", headers=_auth(env.token_ab))
        buffer = client.app.state.audit  # type: ignore[attr-defined]
    assert read_audit(env.store).height == 1
    assert any("at shutdown" in r.getMessage() for r in caplog.records)
    failing["always"] = False
    assert buffer.flush() == 1  # the record was kept, not lost
    assert read_audit(env.store).select("path").to_series().to_list() == [FORECAST_A, "/v1/sites"]


def test_a_deleted_token_is_refused_within_the_token_cache_time(
    make_app: AppFactory, env: Env
) -> None:
    cache_s = 0.4
    token_id = env.token_ab.split("_")[1]
    with TestClient(make_app(token_cache_s=cache_s)) as client:
        assert client.get(FORECAST_A, headers=_auth(env.token_ab)).status_code == 200
        with env.store.begin() as conn:
            conn.execute(sa.text("DELETE FROM tokens WHERE token_id = :t"), {"t": token_id})
        deleted = time.monotonic()
        statuses: list[int] = []
        while not statuses or statuses[-1] != 401:
            assert time.monotonic() - deleted < cache_s + 1.0, statuses  # 1 s: a busy machine
            statuses.append(client.get(FORECAST_A, headers=_auth(env.token_ab)).status_code)
            time.sleep(0.02)
    assert set(statuses) <= {200, 401}


def test_healthz_and_openapi_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert {
        "/healthz",
        "/v1/sites",
        "/v1/sites/{site_id}/forecast",
        "/v1/sites/{site_id}/schedule",
    } <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_a_store_failure_is_a_500_problem_without_details(make_app: AppFactory, env: Env) -> None:
    with env.store.begin() as conn:
        conn.execute(sa.text("DROP TABLE intervals"))
        conn.execute(sa.text("DROP TABLE runs"))
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        response = client.get(FORECAST_A, headers=_auth(env.token_ab))
    _assert_problem(response, 500, "internal error")
    assert "runs" not in response.text
