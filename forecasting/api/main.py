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

    Everything allocated so far (about 100k objects: FastAPI, pydantic, polars, SQLAlchemy) is
    then moved out of the garbage collector's view (:func:`gc.freeze`): a full collection of it
    takes some 50 ms, a pause that lands on whichever requests are in flight, about once every
    20k requests. Serving allocates little that lives long, so little is left to collect.
    """
    store = open_store(settings.forecast_store_url)
    api = create_app(settings, store, load_site_catalog(settings))
    gc.freeze()
    return api


def create_app_from_env() -> FastAPI:
    """Build the API from the ``EVCAST_*`` environment (uvicorn's app factory)."""
    return build_app(Settings())
