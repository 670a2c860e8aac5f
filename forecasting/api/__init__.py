"""HTTP API of evcast: authenticated, signed forecast and schedule fetches (FastAPI)."""

from forecasting.api.app import create_app
from forecasting.api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
