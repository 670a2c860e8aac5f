"""Fixtures of the API tests: a real SQLite store with runs and tokens, the app over it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from api_support import SIGNING_KEY, SITES, T0, AppFactory, Clock, Env, publish_example
from fastapi import FastAPI
from fastapi.testclient import TestClient

from forecasting.api import ApiConfig, create_app
from forecasting.api.auth import issue_token
from forecasting.io.forecast_store import open_store
from forecasting.settings import Settings


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = open_store(f"sqlite:///{tmp_path / 'forecasts.db'}")
    run_a = publish_example(store, "site-a")
    for site_id in ("site-b", "site-c"):
        publish_example(store, site_id)
    _, token_ab = issue_token(store, sites=["site-a", "site-b"], now=T0, expires_at=None)
    _, token_c = issue_token(store, sites=["site-c"], now=T0, expires_at=None)
    _, token_expired = issue_token(
        store, sites=["site-a"], now=T0 - timedelta(days=2), expires_at=T0
    )
    settings = Settings(home=tmp_path, signing_key=SIGNING_KEY, store_url=str(store.url))
    yield Env(store, settings, Clock(), token_ab, token_c, token_expired, run_a)
    store.dispose()


@pytest.fixture
def make_app(env: Env) -> AppFactory:
    def make(**config: object) -> FastAPI:
        api_config = ApiConfig(**{"latest_ttl_s": 0.0, **config})
        return create_app(env.settings, env.store, SITES, config=api_config, clock=env.clock)

    return make


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client
