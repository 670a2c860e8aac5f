"""Fuzz the OpenAPI document with schemathesis: no generated request may cause a server error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from api_support import SIGNING_KEY, SITES, T0, Clock, publish_example
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from forecasting.api import ApiConfig, create_app
from forecasting.api.auth import issue_token
from forecasting.io.forecast_store import open_store
from forecasting.settings import Settings

FOLDER = Path(tempfile.mkdtemp(prefix="evcast-fuzz-"))


def _build_app() -> tuple[FastAPI, str]:
    """The app over a real store with every site published; built at import for schemathesis."""
    store = open_store(f"sqlite:///{FOLDER / 'forecasts.db'}")
    for site in SITES:
        publish_example(store, site.site_id)
    _, token = issue_token(store, sites=[s.site_id for s in SITES], now=T0, expires_at=None)
    app = create_app(
        Settings(home=FOLDER, signing_key=SIGNING_KEY),
        store,
        SITES,
        config=ApiConfig(rate_per_s=1000, burst=1000),
        clock=Clock(T0 + timedelta(hours=2)),
    )
    return app, token


APP, TOKEN = _build_app()
# schemathesis.pytest.from_fixture fails on pytest 9 (it reads the removed Function._nodeid),
# so the schema is loaded at import from an app built here.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _remove_store() -> Iterator[None]:
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=25,  # bounded so the whole fuzz run stays well under a minute on 2 cores
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_causes_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
    )
