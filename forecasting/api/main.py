"""The API as uvicorn loads it in each worker process: ``forecasting.api.main:create_app_from_env``.

Several worker processes (``evcast serve --workers N``) cannot share one application object:
uvicorn starts each worker fresh and calls this factory there, so every worker builds its own
app from the environment (``EVCAST_*`` variables, inherited from ``evcast serve``), with its own
caches, rate limiter and audit buffer over the same forecast store.
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from forecasting.api.app import create_app
from forecasting.io.catalog import load_site_catalog
from forecasting.io.forecast_store import open_store
from forecasting.settings import Settings


def build_app(settings: Settings) -> FastAPI:
    """Build the API over the forecast store and site catalog named by ``settings``.

    Raises
    ------
    ConfigError
        When the site catalog cannot be loaded (e.g. ``sites.toml`` is missing).
    StoreError
        When the forecast store cannot be opened.
    """
    store = open_store(settings.forecast_store_url)
    return create_app(settings, store, load_site_catalog(settings))


def check_settings(settings: Settings) -> None:
    """Open the forecast store and load the site catalog as :func:`build_app` will, then let go.

    ``evcast serve --workers N`` calls it before starting the workers, so a bad configuration
    is reported once instead of crashing every worker at start-up, again and again.

    Raises
    ------
    ConfigError
        When the site catalog cannot be loaded (e.g. ``sites.toml`` is missing).
    StoreError
        When the forecast store cannot be opened.
    """
    store = open_store(settings.forecast_store_url)
    try:
        load_site_catalog(settings)
    finally:
        store.dispose()


def freeze_heap() -> None:
    """Move everything allocated so far out of the garbage collector's view (process entry only).

    After start-up (about 100k objects: FastAPI, pydantic, polars, SQLAlchemy), a full
    collection takes some 50 ms, a pause that lands on whichever requests are in flight, about
    once every 20k requests. Serving allocates little that lives long, so after
    :func:`gc.freeze` little is left to collect. It changes the whole process, so only a
    serving process's entry point calls it, never :func:`build_app`.
    """
    gc.collect()
    gc.freeze()


def create_app_from_env() -> FastAPI:
    """Build the API from the ``EVCAST_*`` environment (uvicorn's app factory), then freeze."""
    api = build_app(Settings())
    freeze_heap()
    return api
